"""Record text made inert before it enters a card's markdown ``detail``.

A card's ``detail`` is CommonMark (GitHub Flavored Markdown in practice), rendered by the EHR.
Anything copied from the patient's record — a Condition's ``code.text``, a note, a medication
name — is written by people and systems we do not control, so it must reach the clinician as the
very characters that were recorded and never as markup: no image the browser fetches, no HTML
element, no link, no heading, list, quote or table, no break out of the line it sits on.

:func:`markdown_text` is the one function every record-derived string goes through. It works for
the inline context only (never put record text into a code span: backslash escapes do not work
there). How each hazard is defused:

- control, format and bidirectional-override characters are dropped, and every kind of line
  break (``\\r``, ``\\n``, U+2028, U+0085 ...) becomes one space, so record text never starts a
  line of its own (no heading, list, quote, table row or setext underline can come from it);
- ``&``, ``<`` and ``>`` become the entity references ``&amp;``, ``&lt;`` and ``&gt;``: unlike a
  backslash escape, an entity is still inert when a renderer passes raw HTML through;
- the punctuation that makes inline markup is backslash-escaped (CommonMark §2.4): ``* _ ` [ ] (
  ) ! ~ | \\``, which defeats emphasis, strikethrough, links, images, link reference definitions,
  code spans (backticks) and table cells; other punctuation ("L3-4, 10 mg/mL") is left alone
  so the raw text stays readable, except a first character that could open a block (``# - + =``
  or a digit run followed by ``.`` or ``)``), escaped in case the text ever starts a line;
- a dot inside a word ("evil.com", "www.x"), the colon of ``://`` and every ``@`` are
  backslash-escaped, so that neither GFM's extended autolinks nor a linkifier (bare URLs,
  domain names, e-mail addresses) can turn record text into a link: an escape splits the text
  the linkifier scans, and still renders as the plain character;
- the result is cut to ``limit`` characters (a card has a length budget; an ellipsis says so).

:func:`plain_text` is the same clean-up for plain-text members (suggestion labels, descriptions)
where markdown is not interpreted: line breaks and invisible characters go, nothing is escaped.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import partial

from service.clinical.memo import text_memo

DEFAULT_LIMIT = 60
ELLIPSIS = "…"
# Every kind of line break CommonMark or a browser may honour, and the tab (indented code).
_BREAKS = re.compile("[\r\n\t\v\f\x85\u2028\u2029]+")
_SPACES = re.compile(r" {2,}")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_INLINE = frozenset("*_`[]()!~|\\")
# An ordered-list marker is digits, "." or ")", then a space or the end: "40.6" is not one.
_BLOCK_START = re.compile(r"^(?:[#+=-]|\d+(?=[.)](?:\s|$)))")
_AUTOLINKS = re.compile(r"(?<=[A-Za-z0-9])\.(?=[A-Za-z])|:(?=//)|@")


def _visible(char: str) -> bool:
    """Whether ``char`` is kept: no control (Cc), format (Cf: bidi, zero-width) or unassigned."""
    return unicodedata.category(char) not in ("Cc", "Cf", "Cn", "Co", "Cs")


def plain_text(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` as one clean line of at most ``limit`` characters (no markup interpretation)."""
    text = str(value)
    # Printable ASCII has no line break, control, format or unassigned character: most chart
    # text skips the regular expression and the per-character look-up (which cost more than the
    # rest of the escaping together).
    if not (text.isascii() and text.isprintable()):
        text = "".join(char for char in _BREAKS.sub(" ", text) if _visible(char))
    if "  " in text:
        text = _SPACES.sub(" ", text)
    text = text.strip()
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + ELLIPSIS
    return text


#: One translation table for every character that is escaped: HTML's as character references,
#: CommonMark's inline punctuation with a backslash (one ``str.translate`` per text).
_ESCAPES = str.maketrans({**_ENTITIES, **{char: "\\" + char for char in _INLINE}})


def _escape_block_start(text: str) -> str:
    match = _BLOCK_START.match(text)
    if match is None:
        return text
    end = match.end()
    if text[:end].isdigit():  # "1." or "1)": escape the delimiter after the digits
        return text[:end] + "\\" + text[end:] if text[end : end + 1] == "." else text
    return "\\" + text


def _escaped(value: object, limit: int) -> str:
    text = plain_text(value, limit)
    escaped = text.translate(_ESCAPES)
    return _escape_block_start(_AUTOLINKS.sub(r"\\\g<0>", escaped))


# One bounded memo per length limit (the callers use a handful of fixed limits): drug names,
# code displays and finding labels recur on every card and across patients.
_REMEMBERED: dict[int, Callable[[str], str]] = {}


def markdown_text(value: object, limit: int = DEFAULT_LIMIT) -> str:
    """``value`` (record text) as inline CommonMark that renders as exactly its characters."""
    if not isinstance(value, str):
        return _escaped(value, limit)
    remembered = _REMEMBERED.get(limit)
    if remembered is None:
        remembered = _REMEMBERED.setdefault(
            limit, text_memo(partial(_escaped, limit=limit), size=1_024)
        )
    return remembered(value)
