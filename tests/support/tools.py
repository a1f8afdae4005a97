"""Finding the command-line tools that deployment tests run (hadolint, kubectl).

The project's ``test`` extra installs them as wheels into the project venv, so the venv's own
copy (next to the running interpreter) wins over whatever ``PATH`` holds; a missing tool fails
the test with the command that installs it, never skips it.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


def tool(name: str, hint: str) -> str:
    """The path of ``name`` from the project venv or ``PATH``; fails with ``hint`` if absent."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise AssertionError(f"{name} is not installed: {hint}")
    return found
