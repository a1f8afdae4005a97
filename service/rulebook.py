"""The rule book: the whole clinical content as one readable document for clinical reviewers.

``epidural-cds rule-book`` prints it as Markdown or as a standalone HTML page. The document is
built once as a small tree of blocks (headings, paragraphs, bullet lists, tables) and then written
out in either format, so both say exactly the same. Nothing clinical is written here: the labels
come from ``cards/rulebook.yaml`` and everything else from the validated content in ``cards/``,
so the rule book cannot drift from what the service runs.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from service import content as content_module
from service.clinical.terminology import UNVERIFIED, Code
from service.errors import ContentError

FORMATS = ("markdown", "html")
LABELS = "rulebook"


@dataclass(frozen=True)
class Link:
    """A hyperlink (only http and https addresses become links in HTML)."""

    text: str
    url: str


@dataclass(frozen=True)
class Strong:
    """Emphasised text."""

    text: str


@dataclass(frozen=True)
class Mono:
    """An identifier or code, shown in a fixed-width font."""

    text: str


Inline = str | Link | Strong | Mono
Text = tuple[Inline, ...]


@dataclass(frozen=True)
class Heading:
    """A section heading, level 1 to 4."""

    level: int
    text: str


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of inline text."""

    text: Text


@dataclass(frozen=True)
class Bullets:
    """A bullet list."""

    items: tuple[Text, ...]


@dataclass(frozen=True)
class Table:
    """A table with a header row."""

    header: tuple[str, ...]
    rows: tuple[tuple[Text, ...], ...]


Block = Heading | Paragraph | Bullets | Table


@dataclass(frozen=True)
class RuleBook:
    """The document, plus notes for the author (e.g. a setting without a label)."""

    title: str
    version: str
    blocks: tuple[Block, ...]
    warnings: tuple[str, ...]


# --------------------------------------------------------------------------- reading


def _raw(directory: Path, name: str) -> Any:
    with (directory / f"{name}.yaml").open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def _labels(directory: Path) -> Mapping[str, Any]:
    """``rulebook.yaml``, checked against its schema (file and JSON path on every problem)."""
    file = f"{LABELS}.yaml"
    try:
        doc = _raw(directory, LABELS)
        schema = json.loads(
            (directory / "schema" / f"{LABELS}.schema.json").read_text(encoding="utf-8")
        )
    except FileNotFoundError as exc:
        raise ContentError([(Path(str(exc.filename)).name, "$", "file is missing")]) from exc
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ContentError([(file, "$", f"cannot be read: {exc}")]) from exc
    errors = Draft202012Validator(schema).iter_errors(doc)
    problems = [
        (file, error.json_path, error.message)
        for error in sorted(errors, key=lambda e: e.json_path)
    ]
    if problems:
        raise ContentError(problems)
    return dict(doc)


_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*)\s*:(?P<rest>.*)$")
_COMMENT = re.compile(r"(?:^|\s)#\s?(?P<comment>.*)$")


def _header_comment(text: str) -> str:
    """The comment lines at the top of a YAML file, as one paragraph."""
    lines: list[str] = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line.lstrip("#").strip())
    return " ".join(line for line in lines if line)


def _inline_comments(text: str) -> dict[str, str]:
    """``dotted.key -> comment`` for every ``key: value  # comment`` line of a YAML file."""
    stack: list[tuple[int, str]] = []
    notes: dict[str, str] = {}
    for line in text.splitlines():
        match = _KEY_LINE.match(line)
        if match is None:
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        comment = _COMMENT.search(match["rest"])
        if comment and comment["comment"].strip():
            notes[".".join(key for _, key in stack)] = comment["comment"].strip()
    return notes


def _flatten(doc: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in doc.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from _flatten(value, f"{dotted}.")
        else:
            yield dotted, value


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)  # word lists (limb_words)
    return str(value)


def _phrase(parts: Iterable[str]) -> str:
    return "“" + " ".join(parts) + "”"


def _phrases(phrases: Iterable[Iterable[str]]) -> str:
    return ", ".join(_phrase(p) for p in phrases)


def _words(words: Iterable[str]) -> str:
    return ", ".join(_phrase([w]) for w in words)


def _assertion_context(directory: Path) -> list[Block]:
    """The assertion-context terms of every language (``context.yaml``), for review."""
    doc = _raw(directory, "context")
    blocks: list[Block] = [
        Heading(3, "Assertion context"),
        Paragraph((_header_comment((directory / "context.yaml").read_text(encoding="utf-8")),)),
    ]
    for language, spec in doc["languages"].items():
        active = " (used)" if language == doc["language"] else " (not used)"
        blocks += [
            Heading(4, f"Language {language}{active}"),
            Table(
                ("Class", "Before a finding (scope runs forward)", "After a finding (backward)"),
                tuple(
                    ((Mono(name),), (_words(lists["pre"]),), (_words(lists["post"]),))
                    for name, lists in spec["classes"].items()
                ),
            ),
            Bullets(
                (
                    (
                        Strong("Pseudo-triggers (not triggers; end a scope): "),
                        _words(spec["pseudo"]),
                    ),
                    (Strong("Termination terms: "), _words(spec["termination"])),
                    (
                        Strong("New subject (ends a scope right after "),
                        _words(spec["new_subject"]["after"]),
                        Strong("): "),
                        _words(spec["new_subject"]["terms"]),
                    ),
                    (Strong("Still present (after a finding): "), _words(spec["persisting"])),
                    (
                        Strong("Clause breaks (end a backward scope): "),
                        _words(spec["clause_breaks"]),
                    ),
                    (
                        Strong("Scope length: "),
                        f"forward up to {spec['forward_scope_words']} words, "
                        f"backward up to {spec['backward_scope_words']} words",
                    ),
                )
            ),
        ]
    return blocks


# --------------------------------------------------------------------------- building


def build(directory: Path | None = None) -> RuleBook:
    """Load and validate the content in ``directory`` and lay it out as a rule book."""
    directory = directory or content_module.default_directory()
    content = content_module.load(directory)
    labels = _labels(directory)
    rules = _raw(directory, "rules")
    text_doc = _raw(directory, "text")
    sources_doc = _raw(directory, "sources")["sources"]
    settings_text = (directory / "settings.yaml").read_text(encoding="utf-8")
    settings_doc = yaml.safe_load(settings_text)
    systems = content_module.code_systems(directory)
    valuesets = content_module.value_sets(directory)
    short_names = {uri: name for name, uri in systems.items()}
    warnings: list[str] = []
    blocks: list[Block] = [
        Heading(1, labels["title"]),
        Paragraph(("Content version ", Strong(content.version), ".")),
        Paragraph((" ".join(labels["introduction"].split()),)),
    ]

    def code_text(code: Code) -> Text:
        system = short_names.get(code.system, code.system)
        return (Mono(code.code), f" {code.display} ({system}, {code.status})")

    # ---- card patterns
    wording = content.wording
    blocks += [
        Heading(2, "Card patterns"),
        Paragraph((Strong("Every card says: "), wording.disclaimer)),
        Bullets(
            (
                (Strong("Card source label: "), wording.source_label),
                (Strong("When evidence came from uncoded text: "), wording.text_evidence_note),
                (Strong("When a date is incomplete: "), wording.partial_time_note),
            )
        ),
    ]
    sections = (
        ("critical", rules["critical"]["patterns"]),
        ("warning", rules["warning"]),
        ("info", rules["info"]),
    )
    for indicator, entries in sections:
        blocks += [
            Heading(3, f"{indicator.capitalize()} cards"),
            Paragraph((labels["indicators"].get(indicator, indicator),)),
        ]
        if indicator == "critical":
            blocks += [
                Paragraph((Strong("Next steps on every critical card"),)),
                Bullets(tuple((line,) for line in wording.critical_actions_text)),
            ]
        for entry in entries:
            card = wording.cards[entry["id"]]
            blocks += [
                Heading(4, f"{card.rule} · {card.id}"),
                Bullets(
                    (
                        (Strong("Rule: "), card.rule),
                        (Strong("Pattern: "), Mono(card.id)),
                        (Strong("Indicator: "), indicator),
                        (Strong("Summary: "), card.summary),
                        (Strong("Headline: "), card.headline),
                        (Strong("Topic: "), card.topic_display, " (", Mono(card.topic_code), ")"),
                    )
                ),
                Paragraph((Strong("Detail"),)),
                Bullets(tuple((line,) for line in card.detail)),
                Paragraph((Strong("Sources"),)),
            ]
            source_items: list[Text] = []
            for key in card.sources:
                source = content.sources[key]
                cited: Inline = Link(source.label, source.url) if source.url else source.label
                verified = sources_doc.get(key, {}).get("verified")
                note = f" — checked: {verified}" if verified else ""
                source_items.append((Mono(key), " ", cited, note))
            blocks.append(Bullets(tuple(source_items)))
            blocks.append(Paragraph((Strong("Suggestions"),)))
            suggestion_items: list[Text] = []
            for key in card.suggestions:
                suggestion = content.suggestions[key]
                recommended = " (recommended)" if suggestion.recommended else ""
                for action in suggestion.actions:
                    item: list[Inline] = [
                        Strong(suggestion.label),
                        f"{recommended}: {action.text} ({action.priority}); codes: ",
                    ]
                    for i, code in enumerate(action.coding):
                        item += [*(("; ",) if i else ()), *code_text(code)]
                    suggestion_items.append(tuple(item))
            blocks.append(Bullets(tuple(suggestion_items) or (("none",),)))

    # ---- imaging region (which MRI a critical card offers)
    imaging = content.imaging
    need_items: list[Text] = [
        (Mono(pattern), " → ", Strong(need)) for pattern, need in imaging.by_pattern.items()
    ]
    region_items: list[Text] = []
    for region, by_need in imaging.regions.items():
        for need in imaging.needs:
            chosen: list[Inline] = [Strong(region), f", {need}: "]
            for i, key in enumerate(by_need[need]):
                role = "recommended" if i == 0 else "alternative"
                chosen += [*(("; ",) if i else ()), content.suggestions[key].label, f" ({role})"]
            region_items.append(tuple(chosen))
    blocks += [
        Heading(2, "Imaging region"),
        Paragraph((" ".join(labels["imaging"].split()),)),
        Paragraph(
            (
                Strong("Imaging need of each red-flag pattern"),
                f" (most demanding first: {', '.join(imaging.needs)})",
            )
        ),
        Bullets(tuple(need_items)),
        Paragraph((Strong("MRI offered, by region and need"),)),
        Bullets(tuple(region_items)),
    ]

    # ---- windows and thresholds
    setting_labels: Mapping[str, str] = labels["settings"]
    notes = _inline_comments(settings_text)
    rows: list[tuple[Text, ...]] = []
    keys = []
    for key, value in _flatten(settings_doc):
        keys.append(key)
        label = setting_labels.get(key)
        if label is None:
            warnings.append(f"settings.yaml {key} has no label in rulebook.yaml")
        rows.append(
            (
                (Mono(key),),
                (Strong(_value(value)),),
                (label or "(no label yet: add one to rulebook.yaml)",),
                (notes.get(key, ""),),
            )
        )
    warnings += [
        f"rulebook.yaml labels {key}, which settings.yaml does not have"
        for key in setting_labels
        if key not in keys
    ]
    blocks += [
        Heading(2, "Windows and thresholds"),
        Paragraph((_header_comment(settings_text),)),
        Table(("Setting", "Value", "Meaning", "Note in settings.yaml"), tuple(rows)),
    ]

    # ---- value sets
    statuses: Mapping[str, str] = labels["statuses"]
    concepts = content.lexicon.codes.concepts
    blocks += [
        Heading(2, "Value sets"),
        Paragraph(
            (
                "One FHIR ValueSet per concept in ",
                Mono("cards/valuesets/"),
                "; a VSAC expansion dropped into ",
                Mono("cards/valuesets/imports/<concept>.json"),
                " adds its codes to the concept with status VSAC. Verification statuses:",
            )
        ),
        Table(
            ("Status", "Meaning"),
            tuple(((Mono(status),), (meaning,)) for status, meaning in statuses.items()),
        ),
        Paragraph(("Code systems:",)),
        Table(
            ("Name", "System URI"),
            tuple(((Mono(name),), (uri,)) for name, uri in systems.items()),
        ),
    ]
    for name in sorted(concepts):
        resource = valuesets.curated[name]
        codes = concepts[name]
        unverified = sum(1 for code in codes if code.status == UNVERIFIED)
        blocks += [
            Heading(3, str(resource["title"])),
            Paragraph(
                (
                    Strong("Concept: "),
                    Mono(name),
                    " · ",
                    Mono(str(resource["url"])),
                    f" · version {resource['version']}",
                )
            ),
            Paragraph((" ".join(str(resource["description"]).split()),)),
        ]
        if name in valuesets.imports:
            imported = valuesets.imports[name]
            origin = imported.get("title") or imported.get("name") or imported.get("url") or ""
            version = f", version {imported['version']}" if imported.get("version") else ""
            blocks.append(
                Paragraph(
                    (
                        Strong("Imported expansion: "),
                        Mono(f"{content_module.IMPORT_DIR}/{name}.json"),
                        f" {origin}{version}".rstrip(),
                    )
                )
            )
        if not codes:
            blocks.append(Paragraph(("No codes: this concept is recognised from text only.",)))
            continue
        blocks += [
            Paragraph((f"{len(codes)} codes, {unverified} UNVERIFIED (not used for matching).",)),
            Table(
                ("System", "Code", "Display", "Status", "Implied side"),
                tuple(
                    (
                        (short_names.get(code.system, code.system),),
                        (Mono(code.code),),
                        (code.display,),
                        (Strong("UNVERIFIED — not used for matching"),)
                        if code.status == UNVERIFIED
                        else (code.status,),
                        (code.laterality or "",),
                    )
                    for code in codes
                ),
            ),
        ]

    # ---- text recognition
    blocks += [
        Heading(2, "Text recognition"),
        Paragraph((_header_comment((directory / "text.yaml").read_text(encoding="utf-8")),)),
        *_assertion_context(directory),
        Heading(3, "Procedures (the first class whose phrases match wins)"),
        Table(
            ("Class", "Label on cards", "Phrases"),
            tuple(
                (
                    (Mono(entry["class"]),),
                    (wording.procedure_labels.get(entry["class"], ""),),
                    (_phrases(entry["phrases"]),),
                )
                for entry in text_doc["procedures"]
            ),
        ),
        Heading(3, "Findings"),
        Table(
            ("Concept", "Label on cards", "Phrases", "Same sentence must also mention one of"),
            tuple(
                (
                    (Mono(name),),
                    (wording.finding_labels.get(name, ""),),
                    (_phrases(entry["phrases"]),),
                    (_words(entry.get("requires_any", ())),),
                )
                for name, entry in text_doc["findings"].items()
            ),
        ),
        Heading(3, "Laterality words"),
        Table(
            ("Side", "Label on cards", "Phrases"),
            tuple(
                (
                    (Mono(side),),
                    (wording.laterality_labels.get(side, ""),),
                    (_phrases(phrases),),
                )
                for side, phrases in text_doc["laterality"].items()
            ),
        ),
        Heading(3, "Medication names"),
        Table(
            ("List", "Names"),
            tuple(
                ((Mono(key),), (_words(names),))
                for key, names in text_doc.items()
                if key.endswith("_names")
            ),
        ),
    ]

    # ---- override reasons
    blocks += [
        Heading(2, "Override reasons"),
        Paragraph(("Code system: ", Mono(wording.override_system))),
        Table(
            ("Code", "Reason"),
            tuple(((Mono(code),), (display,)) for code, display in wording.override_reasons),
        ),
    ]
    # ---- every source, cited or not
    blocks += [
        Heading(2, "Sources"),
        Table(
            ("Key", "Source", "How it was checked"),
            tuple(
                (
                    (Mono(key),),
                    (Link(source.label, source.url) if source.url else source.label,),
                    (str(sources_doc.get(key, {}).get("verified") or ""),),
                )
                for key, source in content.sources.items()
            ),
        ),
    ]
    blocks = [b for b in blocks if not (isinstance(b, Paragraph) and b.text in ((), ("",)))]
    return RuleBook(labels["title"], content.version, tuple(blocks), tuple(warnings))


# --------------------------------------------------------------------------- Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#&])")


def _md_text(text: str) -> str:
    return _MD_SPECIAL.sub(r"\\\1", re.sub(r"\s+", " ", text))


def _md_url(url: str) -> str:
    return "".join(f"%{ord(c):02X}" if c in "()<> " else c for c in url)


def _md_inline(text: Text) -> str:
    out: list[str] = []
    for part in text:
        if isinstance(part, Link):
            out.append(f"[{_md_text(part.text)}]({_md_url(part.url)})")
        elif isinstance(part, Strong):
            # Emphasis markers must touch the text: "**Rule:** R-01", not "**Rule: **R-01".
            inner = part.text.strip()
            lead = " " if part.text[:1].isspace() else ""
            trail = " " if part.text[-1:].isspace() else ""
            out.append(f"{lead}**{_md_text(inner)}**{trail}")
        elif isinstance(part, Mono):
            fence = "``" if "`" in part.text else "`"
            out.append(f"{fence}{' '.join(part.text.split())}{fence}")
        else:
            out.append(_md_text(part))
    return "".join(out).strip()


def to_markdown(book: RuleBook) -> str:
    """The rule book as CommonMark/GitHub-flavoured Markdown (content is escaped)."""
    chunks: list[str] = []
    for block in book.blocks:
        if isinstance(block, Heading):
            chunks.append(f"{'#' * block.level} {_md_text(block.text)}")
        elif isinstance(block, Paragraph):
            chunks.append(_md_inline(block.text))
        elif isinstance(block, Bullets):
            chunks.append("\n".join(f"- {_md_inline(item)}" for item in block.items))
        else:
            lines = [
                "| " + " | ".join(_md_text(h) for h in block.header) + " |",
                "|" + "---|" * len(block.header),
                *("| " + " | ".join(_md_inline(cell) for cell in row) + " |" for row in block.rows),
            ]
            chunks.append("\n".join(lines))
    return "\n\n".join(chunks) + "\n"


# --------------------------------------------------------------------------- HTML

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:72em;margin:2em auto;padding:0 1em;"
    "line-height:1.45}table{border-collapse:collapse;margin:.5em 0 1em}"
    "th,td{border:1px solid #bbb;padding:.25em .5em;text-align:left;vertical-align:top}"
    "th{background:#eee}code{background:#f3f3f3;padding:0 .2em}h4{margin-bottom:.3em}"
)


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _html_inline(text: Text) -> str:
    out: list[str] = []
    for part in text:
        if isinstance(part, Link):
            if part.url.startswith(("https://", "http://")):
                out.append(f'<a href="{_esc(part.url)}">{_esc(part.text)}</a>')
            else:
                out.append(_esc(part.text))
        elif isinstance(part, Strong):
            out.append(f"<strong>{_esc(part.text)}</strong>")
        elif isinstance(part, Mono):
            out.append(f"<code>{_esc(part.text)}</code>")
        else:
            out.append(_esc(part))
    return "".join(out)


def to_html(book: RuleBook) -> str:
    """The rule book as a standalone HTML page (every piece of content is escaped)."""
    body: list[str] = []
    for block in book.blocks:
        if isinstance(block, Heading):
            body.append(f"<h{block.level}>{_esc(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_html_inline(block.text)}</p>")
        elif isinstance(block, Bullets):
            items = "".join(f"<li>{_html_inline(item)}</li>" for item in block.items)
            body.append(f"<ul>{items}</ul>")
        else:
            head = "".join(f"<th>{_esc(h)}</th>" for h in block.header)
            rows = "".join(
                "<tr>" + "".join(f"<td>{_html_inline(cell)}</td>" for cell in row) + "</tr>"
                for row in block.rows
            )
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    title = f"{book.title} ({book.version})"
    return "\n".join(
        (
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            f"<title>{_esc(title)}</title>",
            f"<style>{_STYLE}</style>",
            "</head>",
            "<body>",
            *body,
            "</body>",
            "</html>",
            "",
        )
    )


def render(book: RuleBook, fmt: str = "markdown") -> str:
    """The rule book in ``fmt`` (``markdown`` or ``html``)."""
    if fmt == "markdown":
        return to_markdown(book)
    if fmt == "html":
        return to_html(book)
    raise ValueError(f"unknown rule-book format {fmt!r}; use one of {', '.join(FORMATS)}")
