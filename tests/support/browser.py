"""A real headless browser for the tests: Debian's Chromium driven by Playwright's Python package.

Playwright's own browser download cannot run here (only the package registries are reachable),
so the tests launch the distribution's Chromium (installed by ``scripts/ensure-test-deps``) with
the flags that keep it from phoning home. Each test gets a fresh browser context, and every
request the page makes is recorded so a test can assert that nothing was fetched from the data.

Screenshots go to :func:`artifact_dir` (``$EPIDURAL_CDS_ARTIFACTS``, default
``.cache/artifacts`` in the project), kept after the run as test artifacts.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str:
    """The distribution's Chromium, or a skip-free failure naming the install script."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("Chromium is not installed: run scripts/ensure-test-deps as root")


def artifact_dir(*parts: str) -> Path:
    """Where screenshots and other test artifacts are written (created if missing)."""
    base = Path(os.environ.get("EPIDURAL_CDS_ARTIFACTS", ROOT / ".cache" / "artifacts"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class BrowserPage:
    """A page in a fresh context, with every request it made (URL strings, in order)."""

    page: Any
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@contextmanager
def browser_page(width: int = 1280, height: int = 800) -> Iterator[BrowserPage]:
    """Open a fresh Chromium context and page of the given viewport; closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            page = context.new_page()
            recorded = BrowserPage(page)
            page.on("request", lambda req: recorded.requests.append(req.url))
            page.on(
                "console",
                lambda msg: recorded.console_errors.append(msg.text)
                if msg.type == "error"
                else None,
            )
            yield recorded
            context.close()
        finally:
            browser.close()


def screenshot_is_not_blank(path: Path) -> bool:
    """True when the PNG has more than one colour: a page that rendered something."""
    from PIL import Image

    with Image.open(path) as image:
        colours = image.convert("RGB").getcolors(maxcolors=2)
    return colours is None or len(colours) > 1
