"""The configuration reference and the README's settings table agree with the code.

The code's settings table (``Settings`` in service/config.py) is the truth. The documents are
parsed here on their own (not through the generator), so a setting that is missing, left over
after a rename, or shown with a wrong default fails these tests; so does a document that is
merely stale (``epidural-cds config-reference`` would write something else).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from service import configref
from service.config import Settings

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
REFERENCE = ROOT / "docs" / "configuration.md"
ROW = re.compile(r"^\| `(EPIDURAL_CDS_[A-Z0-9_]+)` \|(?: [^|`]+ \|)? `([^`]*)` \|", re.MULTILINE)


def documented(text: str) -> dict[str, str]:
    """``{variable: default}`` of every settings row in a Markdown document."""
    rows = ROW.findall(text)
    names = [name for name, _ in rows]
    assert len(names) == len(set(names)), f"a variable is listed twice: {sorted(names)}"
    return dict(rows)


def in_code() -> dict[str, str]:
    return {name: default for name, default, _ in Settings.describe()}


def readme_table() -> str:
    text = README.read_text(encoding="utf-8")
    start, stop = text.index(configref.BEGIN), text.index(configref.END)
    return text[start + len(configref.BEGIN) : stop].strip("\n") + "\n"


def test_readme_lists_exactly_the_settings_of_the_code_with_their_defaults() -> None:
    assert documented(readme_table()) == in_code()
    # Outside the generated block the README names no other settings row.
    assert documented(README.read_text(encoding="utf-8")) == in_code()


def test_reference_lists_exactly_the_settings_of_the_code_with_their_defaults() -> None:
    assert documented(REFERENCE.read_text(encoding="utf-8")) == in_code()


def test_documents_are_what_the_generator_writes_today() -> None:
    regenerate = f"stale: run .venv/bin/{configref.REGENERATE}"
    assert REFERENCE.read_text(encoding="utf-8") == configref.reference(), regenerate
    assert readme_table() == configref.table(), regenerate


def test_the_check_catches_a_wrong_default_a_missing_and_an_extra_setting() -> None:
    table = configref.table()
    assert documented(table) == in_code()
    wrong_default = table.replace("| `5000000` |", "| `6000000` |")
    assert documented(wrong_default) != in_code()
    missing = "\n".join(line for line in table.splitlines() if "LOG_LEVEL" not in line)
    assert documented(missing) != in_code()
    extra = table + "| `EPIDURAL_CDS_RETIRED` | `1` | gone |\n"
    assert documented(extra) != in_code()


def test_reference_shows_each_settings_type() -> None:
    rows = {
        line.split("|")[1].strip(" `"): line.split("|")[2].strip()
        for line in configref.reference().splitlines()
        if line.startswith("| `EPIDURAL_CDS_")
    }
    assert rows["EPIDURAL_CDS_AUTH_DISABLED"] == "true/false"
    assert rows["EPIDURAL_CDS_FHIR_PAGE_SIZE"] == "integer"  # int | None reads as integer
    assert rows["EPIDURAL_CDS_FHIR_DEADLINE"] == "number"
    assert rows["EPIDURAL_CDS_ISSUERS_FILE"] == "path"
    assert rows["EPIDURAL_CDS_CORS_ORIGINS"] == "comma-separated list"
    assert rows["EPIDURAL_CDS_PROFILE"] == "text"


def test_one_command_regenerates_both_documents(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    stale = README.read_text(encoding="utf-8").replace("| `60.0` |", "| `30.0` |")
    readme.write_text(stale, encoding="utf-8")
    output = tmp_path / "configuration.md"
    args = configref.REGENERATE.split()[1:]
    args[args.index("docs/configuration.md")] = str(output)
    args[args.index("README.md")] = str(readme)
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert output.read_text(encoding="utf-8") == REFERENCE.read_text(encoding="utf-8")
    assert readme.read_text(encoding="utf-8") == README.read_text(encoding="utf-8")


def test_a_readme_without_the_markers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no generated settings table"):
        configref.with_table("# A README\n\nno table here\n")
    readme = tmp_path / "README.md"
    shutil.copy(ROOT / "cards" / "CHANGELOG.md", readme)
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "config-reference", "--readme", str(readme)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "no generated settings table" in result.stderr
    assert "Traceback" not in result.stderr
