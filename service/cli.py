"""The ``epidural-cds`` command: serve, evaluate offline, check content.

``serve`` starts the service under gunicorn on the embedded defaults; ``evaluate`` runs exactly
the code path of a hook call on a request file (or a FHIR Bundle plus ``--patient``) so an
informaticist can see the cards without an EHR; ``check-content`` validates ``cards/`` and reports
every problem by file and JSON path; ``import-valueset`` adds a VSAC expansion to a concept's code
list; ``rule-book`` renders the whole clinical content as one document for clinical reviewers.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from service import __version__
from service.config import Settings
from service.errors import ConfigError, ContentError, ServiceError

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
CLI_USER = "Practitioner/epidural-cds-cli"


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _settings_table() -> str:
    rows = [
        f"  {name} (default {default})\n      {help_text}"
        for name, default, help_text in Settings.describe()
    ]
    return "environment variables:\n" + "\n".join(rows)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="epidural-cds",
        description="CDS Hooks 2.0 service that flags complications after epidural procedures.",
        epilog=_settings_table(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="serve the CDS Hooks endpoints with gunicorn")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    serve.add_argument("--workers", type=int, default=2, help="worker processes (default 2)")
    serve.add_argument("--threads", type=int, default=1, help="threads per worker (default 1)")

    evaluate = commands.add_parser(
        "evaluate", help="print the cards for a hook request file, or a FHIR Bundle with --patient"
    )
    evaluate.add_argument("file", type=Path, help="hook request JSON, or a FHIR Bundle")
    evaluate.add_argument("--now", help="evaluation time, ISO 8601 with offset (default: now)")
    evaluate.add_argument("--patient", help="Patient id, when FILE is a FHIR Bundle")
    evaluate.add_argument("--service", help="service id (default: the first service)")
    evaluate.add_argument(
        "--summary", action="store_true", help="print one line per card instead of JSON"
    )

    example = commands.add_parser(
        "example-request",
        help="print the hook request of an example in fhir_examples/, moved in time to now",
    )
    example.add_argument(
        "directory", type=Path, help="an example folder (bundle.json, scenario.json)"
    )
    example.add_argument(
        "--keep-times",
        action="store_true",
        help="keep the example's own times (for evaluate --now)",
    )

    check = commands.add_parser("check-content", help="validate the clinical content in cards/")
    check.add_argument("--dir", type=Path, help="content directory (default: the shipped one)")

    vsac = commands.add_parser(
        "import-valueset",
        help="add the codes of a VSAC ValueSet expansion to a concept (valuesets/imports/)",
    )
    vsac.add_argument("file", type=Path, help="a FHIR ValueSet JSON with expansion.contains")
    vsac.add_argument("--concept", required=True, help="the concept to add the codes to")
    vsac.add_argument("--dir", type=Path, help="content directory (default: the shipped one)")

    book = commands.add_parser(
        "rule-book", help="render the whole clinical content as one document for reviewers"
    )
    book.add_argument(
        "--format", choices=("markdown", "html"), default="markdown", help="(default markdown)"
    )
    book.add_argument("--output", type=Path, help="write to FILE (default: standard output)")
    book.add_argument("--dir", type=Path, help="content directory (default: the shipped one)")
    return parser


def _parse_now(value: str | None) -> datetime | None:
    if value is None:
        return None
    now = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if now.tzinfo is None:
        raise ValueError("--now needs a UTC offset, e.g. 2026-03-10T20:00:00+00:00")
    return now


def request_from_bundle(
    bundle: dict[str, Any], patient_id: str, prefetch: dict[str, str]
) -> dict[str, Any]:
    """A patient-view hook request whose prefetch is answered from ``bundle`` by our templates."""
    from service.fhir.local_search import build_prefetch, bundle_resources
    from service.fhir.prefetch import render_template

    context = {"userId": CLI_USER, "patientId": patient_id}
    queries = {key: render_template(query, context) for key, query in prefetch.items()}
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": context,
        "prefetch": build_prefetch(bundle_resources(bundle), queries),
    }


_PATIENT_FIELDS = ("subject", "patient", "beneficiary")


def patient_ids(bundle: dict[str, Any]) -> list[str]:
    """Every patient a Bundle speaks of: Patient ids and ``Patient/ID`` subject references.

    ``evaluate --patient ID`` on a Bundle that holds nothing about ID would answer "no cards"
    for a patient we never saw; the caller must instead learn which ids the file does hold.
    """
    from service.fhir.local_search import bundle_resources

    found: set[str] = set()
    for resource in bundle_resources(bundle):
        if resource.get("resourceType") == "Patient" and isinstance(resource.get("id"), str):
            found.add(resource["id"])
        for name in _PATIENT_FIELDS:
            ref = resource.get(name)
            target = ref.get("reference") if isinstance(ref, dict) else None
            if isinstance(target, str) and target.startswith("Patient/"):
                found.add(target.removeprefix("Patient/"))
    return sorted(found)


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    from service import content as content_module
    from service.cdshooks.handler import HookHandler

    content = content_module.load(settings.content_dir)
    handler = HookHandler(content, settings)
    service = content.services[0] if args.service is None else handler.service(args.service)
    try:
        document = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"epidural-cds: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if isinstance(document, dict) and document.get("resourceType") == "Bundle":
        if not args.patient:
            print("epidural-cds: FILE is a FHIR Bundle; give --patient ID", file=sys.stderr)
            return EXIT_USAGE
        try:
            present = patient_ids(document)
        except ValueError as exc:
            print(f"epidural-cds: {args.file} is not a usable Bundle: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if args.patient not in present:
            names = ", ".join(repr(p) for p in present) or "none"
            print(
                f"epidural-cds: {args.file} holds no Patient and no resources for patient "
                f"{args.patient!r}; patient ids present: {names}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        templates = {spec.key: spec.query for spec in service.prefetch}
        document = request_from_bundle(document, args.patient, templates)
    outcome = handler.handle(service.id, json.dumps(document).encode(), now=_parse_now(args.now))
    if args.summary:
        for card in outcome.response["cards"]:
            print(f"{card['indicator']}: {card['summary']}")
        if not outcome.response["cards"]:
            print("no cards")
    else:
        print(json.dumps(outcome.response, indent=2, ensure_ascii=False))
    return EXIT_OK


def _example_request(args: argparse.Namespace, settings: Settings) -> int:
    from service import content as content_module
    from service.fhir.timeshift import shift_times

    service = content_module.load(settings.content_dir).services[0]
    try:
        scenario = json.loads((args.directory / "scenario.json").read_text(encoding="utf-8"))
        bundle = json.loads((args.directory / "bundle.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"epidural-cds: cannot read the example in {args.directory}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not args.keep_times:
        then = datetime.fromisoformat(scenario["now"])
        bundle = shift_times(bundle, datetime.now(then.tzinfo) - then)
    templates = {spec.key: spec.query for spec in service.prefetch}
    request = request_from_bundle(bundle, scenario["patientId"], templates)
    print(json.dumps(request, indent=2, ensure_ascii=False))
    return EXIT_OK


def _check_content(args: argparse.Namespace) -> int:
    from service import content as content_module

    loaded = content_module.load(args.dir)
    concepts = loaded.lexicon.codes.concepts
    codes = [c for cs in concepts.values() for c in cs]
    unverified = sum(1 for c in codes if not c.usable)
    print(
        f"content {loaded.version} in {loaded.directory}: valid — {len(concepts)} concepts, "
        f"{len(codes)} codes ({unverified} UNVERIFIED, not matched), "
        f"{len(loaded.wording.cards)} card patterns, {len(loaded.sources)} sources, "
        f"{len(loaded.suggestions)} suggestions"
    )
    return EXIT_OK


def _import_valueset(args: argparse.Namespace) -> int:
    from service import content as content_module
    from service.clinical.terminology import UNVERIFIED, expansion_codes

    directory: Path = args.dir or content_module.default_directory()
    try:
        document = json.loads(args.file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"epidural-cds: cannot read {args.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    problems = content_module.import_problems(directory, document, str(args.file))
    if problems:
        print(f"epidural-cds: {args.file} is not a usable ValueSet expansion:", file=sys.stderr)
        for file, path, message in problems:
            print(f"  {file} {path}: {message}", file=sys.stderr)
        return EXIT_ERROR
    loaded = content_module.load(directory)
    concepts = loaded.lexicon.codes.concepts
    if args.concept not in concepts:
        print(
            f"epidural-cds: unknown concept {args.concept!r}; known: {', '.join(sorted(concepts))}",
            file=sys.stderr,
        )
        return EXIT_ERROR
    current = {(code.system, code.code): code for code in concepts[args.concept]}
    incoming = expansion_codes(document)
    present = [code for code in incoming if (code.system, code.code) in current]
    unverified = [c for c in present if current[(c.system, c.code)].status == UNVERIFIED]
    known_systems = set(content_module.code_systems(directory).values())
    unknown_systems = sorted({c.system for c in incoming} - known_systems)

    target = directory / content_module.IMPORT_DIR / f"{args.concept}.json"
    previous = target.read_bytes() if target.exists() else None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    try:
        reloaded = content_module.load(directory)
    except ContentError:
        if previous is None:
            target.unlink()
        else:
            target.write_bytes(previous)
        raise
    total = len(reloaded.lexicon.codes.concepts[args.concept])
    print(
        f"{args.file}: {len(incoming)} codes for concept {args.concept}: "
        f"{len(incoming) - len(present)} new (status VSAC), {len(present)} already present"
    )
    if unverified:
        print(
            f"  {len(unverified)} of the codes already present are UNVERIFIED in the curated "
            f"value set and stay unmatched until a reviewer changes them there: "
            + ", ".join(f"{c.system}|{c.code}" for c in unverified)
        )
    if unknown_systems:
        print(
            "  systems not in systems.yaml (matched, never used in prefetch queries): "
            + ", ".join(unknown_systems)
        )
    replaced = " (replaces the previous import)" if previous is not None else ""
    print(f"written to {target}{replaced}; concept {args.concept} now has {total} codes")
    return EXIT_OK


def _rule_book(args: argparse.Namespace) -> int:
    from service import rulebook

    book = rulebook.build(args.dir)
    for warning in book.warnings:
        print(f"epidural-cds: note: {warning}", file=sys.stderr)
    text = rulebook.render(book, args.format)
    if args.output is None:
        sys.stdout.write(text)
        return EXIT_OK
    try:
        args.output.write_text(text, encoding="utf-8")
    except OSError as exc:
        print(f"epidural-cds: cannot write {args.output}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"rule book ({args.format}, content {book.version}) written to {args.output}")
    return EXIT_OK


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from service.http.app import create_app
    from service.http.server import serve

    if settings.development:
        if args.host not in LOOPBACK and not settings.allow_dev_on_network:
            print(
                f"epidural-cds: the development profile only binds loopback; use "
                f"--host 127.0.0.1, the production profile, or set "
                f"EPIDURAL_CDS_ALLOW_DEV_ON_NETWORK=true to bind {args.host}",
                file=sys.stderr,
            )
            return EXIT_USAGE
        if settings.public_base_url is None:
            host = f"[{args.host}]" if ":" in args.host else args.host
            settings = replace(settings, public_base_url=f"http://{host}:{args.port}")
    app = create_app(settings)
    serve(app, args.host, args.port, args.workers, args.threads)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``epidural-cds`` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        _configure_logging(settings.log_level)
        if args.command == "serve":
            return _serve(args, settings)
        if args.command == "evaluate":
            return _evaluate(args, settings)
        if args.command == "example-request":
            return _example_request(args, settings)
        if args.command == "import-valueset":
            return _import_valueset(args)
        if args.command == "rule-book":
            return _rule_book(args)
        return _check_content(args)
    except ContentError as exc:
        print("epidural-cds: the clinical content is invalid:", file=sys.stderr)
        for file, path, message in exc.problems:
            print(f"  {file} {path}: {message}", file=sys.stderr)
        return EXIT_ERROR
    except ConfigError as exc:
        print(f"epidural-cds: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ServiceError as exc:
        outcome = {"status": exc.status, "error": exc.message}
        if exc.diagnostics:
            outcome["diagnostics"] = exc.diagnostics
        print(f"epidural-cds: {json.dumps(outcome)}", file=sys.stderr)
        return EXIT_ERROR
    except ValueError as exc:
        print(f"epidural-cds: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
