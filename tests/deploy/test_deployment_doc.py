"""docs/deployment.md keeps to the facts: its files exist, its numbers are performance.md's, its
service URL and ``aud`` are the content's, and the commands it tells operators to run exist."""

from __future__ import annotations

import re
from pathlib import Path

from service import content as content_module
from service.cli import _parser

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "deployment.md").read_text(encoding="utf-8")
PERFORMANCE = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
# Built by the parallel `ops` branch (agreed name); present once both are merged.
OTHER_BRANCH = {"deploy/gunicorn.conf.py"}


def test_every_deploy_file_the_doc_names_exists() -> None:
    named = set(re.findall(r"`(deploy/[\w./-]+)`", DOC))
    assert "deploy/Dockerfile" in named and "deploy/compose.yaml" in named
    for path in sorted(named - OTHER_BRANCH):
        assert (ROOT / path).exists(), path


def test_sizing_quotes_measured_numbers() -> None:
    section = DOC[DOC.index("## 7. Sizing") :]
    rows = [line for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    quoted = [re.search(r"\| ([^|]+) \|$", row).group(1) for row in rows[1:]]  # type: ignore[union-attr]
    for value in quoted:
        for number in re.findall(r"\d[\d,.]*(?:-\d[\d.]*)?", value):
            assert number in PERFORMANCE, f"{number} ({value}) is not in docs/performance.md"


def test_service_url_and_audience_are_the_contents() -> None:
    service_id = content_module.load(None).services[0].id
    assert f"BASE/cds-services/{service_id}" in DOC
    example = "https://engine.hospital.org/cds/epidural"
    assert (
        f"exactly `BASE/cds-services/{service_id}`, e.g. `{example}/cds-services/{service_id}`"
        in DOC
    )


def test_commands_the_doc_gives_exist() -> None:
    commands = set(_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    for command in ("serve", "migrate", "check-content", "config-reference", "example-request"):
        assert command in commands
        assert f"epidural-cds {command}" in DOC or f"`{command}`" in DOC or command == "serve"
