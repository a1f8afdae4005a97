"""Load generation: wrk with a token-cycling Lua script, or a Python fallback with keep-alive.

Both return the same summary (requests/s, p50/p99 in ms, how many responses were not 200 and
whether any token had to be reused). Only loopback addresses are ever targeted, every run is
bounded in time, and the Python fallback stops by itself at its deadline.
"""

from __future__ import annotations

import http.client
import json
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.util import median, percentile

LUA = Path(__file__).resolve().parent / "wrk_tokens.lua"
WRK_HINT = (
    "wrk not found: using the Python load generator (slower, and it shares the 2 cores with the "
    "server). For the real numbers install wrk: `apt-get update && apt-get install -y wrk` "
    "(Debian/Ubuntu) or `brew install wrk` (macOS)."
)


#: ``--load-generator``: wrk when it is on PATH (else Python), always wrk, or always Python.
CHOICES = ("auto", "wrk", "python")


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _check_loopback(url: str) -> None:
    host = urlsplit(url).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"load is only ever sent to loopback, not {host!r}")


def run_wrk(
    base_url: str,
    path: str,
    body_file: Path,
    token_prefix: Path,
    *,
    threads: int,
    connections: int,
    duration_s: float,
    delay_ms: float = 0.0,
) -> dict[str, Any]:
    """One wrk run; thread i uses ``token_prefix.i``."""
    _check_loopback(base_url)
    exe = wrk_path()
    assert exe is not None
    command = [
        exe,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        "--timeout",
        "10s",
        "--latency",
        "-s",
        str(LUA),
        base_url,
        "--",
        str(token_prefix),
        str(body_file),
        path,
        str(int(delay_ms)),
    ]
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    raw = json.loads(line[len("BENCHJSON ") :])
    statuses: Counter[str] = Counter()
    for part in raw.get("non200_by_thread", []):
        statuses.update({str(k): int(v) for k, v in part.items()})
    seconds = raw["duration_us"] / 1e6
    lat = raw["latency_us"]
    errors = raw["errors"]
    return {
        "tool": "wrk",
        "threads": threads,
        "connections": connections,
        "duration_s": round(seconds, 3),
        "requests": raw["requests"],
        "rps": round(raw["requests"] / seconds, 1),
        "ok": raw["ok"],
        "non200": raw["non200"],
        "non200_statuses": dict(statuses),
        "socket_errors": errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        "reused_tokens": raw["reused"],
        "sent": raw["sent"],
        "p50_ms": round(lat["p50"] / 1000, 3),
        "p90_ms": round(lat["p90"] / 1000, 3),
        "p99_ms": round(lat["p99"] / 1000, 3),
        "max_ms": round(lat["max"] / 1000, 3),
        "delay_ms": delay_ms,
    }


def run_python(
    base_url: str,
    path: str,
    body: bytes,
    tokens: list[str],
    *,
    connections: int,
    duration_s: float,
    delay_ms: float = 0.0,
) -> dict[str, Any]:
    """A closed-loop load generator: ``connections`` threads, one keep-alive connection each."""
    _check_loopback(base_url)
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    lock = threading.Lock()
    position = [0]
    reused = [0]
    latencies: list[list[float]] = [[] for _ in range(connections)]
    statuses: list[Counter[int]] = [Counter() for _ in range(connections)]
    errors = [0]
    stop_at = time.monotonic() + duration_s

    def next_token() -> str:
        with lock:
            i = position[0]
            position[0] += 1
            if i >= len(tokens):
                reused[0] += 1
            return tokens[i % len(tokens)]

    def worker(n: int) -> None:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        while time.monotonic() < stop_at:
            headers = {
                "Content-Type": "application/json",
                "Authorization": f"Bearer {next_token()}",
            }
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                with lock:
                    errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
                continue
            latencies[n].append((time.perf_counter() - t0) * 1000)
            statuses[n][response.status] += 1
            if delay_ms > 0:
                time.sleep(delay_ms / 1000)
        conn.close()

    started = time.monotonic()
    workers = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(connections)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=duration_s + 30)
    seconds = time.monotonic() - started
    all_lat = [x for per in latencies for x in per]
    total: Counter[int] = Counter()
    for c in statuses:
        total.update(c)
    ok = total.get(200, 0)
    return {
        "tool": "python",
        "threads": connections,
        "connections": connections,
        "duration_s": round(seconds, 3),
        "requests": len(all_lat),
        "rps": round(len(all_lat) / seconds, 1),
        "ok": ok,
        "non200": sum(total.values()) - ok,
        "non200_statuses": {str(k): v for k, v in total.items() if k != 200},
        "socket_errors": errors[0],
        "reused_tokens": reused[0],
        "sent": position[0],
        "p50_ms": round(median(all_lat), 3),
        "p90_ms": round(percentile(all_lat, 90), 3),
        "p99_ms": round(percentile(all_lat, 99), 3),
        "max_ms": round(max(all_lat), 3) if all_lat else 0.0,
        "delay_ms": delay_ms,
    }
