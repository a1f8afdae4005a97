"""Load the example patients of fhir_examples/ into a FHIR server, moved in time to now.

The compose demo's one-shot ``fhir-loader`` runs this in the epidural-cds image (it needs the
package for :func:`service.fhir.timeshift.shift_times`). Each example's scenario fixes its own
"now"; the running service evaluates at the wall clock, so every bundle is moved by the same
amount that takes its scenario to the present before it is posted, as ``epidural-cds
example-request`` does for prefetch. The bundles are transactions of ``PUT``s, so loading twice
replaces rather than duplicates.

Usage: python load_examples.py --fhir http://fhir:8080/fhir [--wait 120] EXAMPLES_DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from service.fhir.timeshift import shift_times


def _post(base: str, bundle: dict[str, Any]) -> int:
    request = urllib.request.Request(
        base,
        data=json.dumps(bundle).encode(),
        method="POST",
        headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _wait(base: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{base}/metadata", timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            raise SystemExit(f"load_examples: {base}/metadata did not answer in {seconds:.0f} s")
        time.sleep(1)


def load(base: str, examples: Path) -> int:
    """Post every example under ``examples``; return how many failed."""
    failed = 0
    for directory in sorted(p for p in examples.iterdir() if (p / "scenario.json").is_file()):
        scenario = json.loads((directory / "scenario.json").read_text(encoding="utf-8"))
        bundle = json.loads((directory / "bundle.json").read_text(encoding="utf-8"))
        then = datetime.fromisoformat(scenario["now"])
        status = _post(base, shift_times(bundle, datetime.now(then.tzinfo) - then))
        print(f"{directory.name}: Patient/{scenario['patientId']} -> HTTP {status}", flush=True)
        failed += status != 200
    return failed


def main(argv: list[str] | None = None) -> int:
    """Entry point: wait for the server, load everything, exit 1 if any bundle failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fhir", required=True, help="FHIR base URL")
    parser.add_argument("--wait", type=float, default=120, help="seconds to wait for the server")
    parser.add_argument("examples", type=Path, help="the fhir_examples directory")
    args = parser.parse_args(argv)
    base = args.fhir.rstrip("/")
    _wait(base, args.wait)
    failed = load(base, args.examples)
    print(f"load_examples: {'all loaded' if not failed else f'{failed} failed'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
