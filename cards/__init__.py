"""Clinical content as data: wording, windows, thresholds and code lists (see README.md here).

This file only lets the installed package locate its content; nothing clinical lives in Python.
"""

from pathlib import Path

CONTENT_DIR = Path(__file__).resolve().parent
