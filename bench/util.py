"""Small shared helpers: statistics, machine facts, ports, subprocesses and /proc readings."""

from __future__ import annotations

import contextlib
import math
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"


# -- statistics -------------------------------------------------------------------------------


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else math.nan


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100): with fewer than 100 samples p99 is the maximum."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return float(ordered[rank - 1])


def least_squares(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Slope and intercept of the least-squares line through the points."""
    n = len(xs)
    mean_x, mean_y = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mean_x) ** 2 for x in xs)
    sxy = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True))
    slope = sxy / sxx if sxx else math.nan
    return slope, mean_y - slope * mean_x


# -- machine ----------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    """What the numbers were measured on (nproc, CPU model, memory, Python, OS)."""
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The current environment without any EPIDURAL_CDS_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPIDURAL_CDS_")}
    env.update(extra or {})
    return env


class Server:
    """A server subprocess in its own session, stopped (only it) by pid on exit."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.command = command
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, health_url: str, timeout_s: float = 60.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited during startup:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(health_url, timeout=1).status_code == 200:
                    # Wait until every worker has forked, so RSS readings see all of them.
                    self._wait_workers(deadline)
                    return
            time.sleep(0.05)
        self.stop()
        raise TimeoutError(f"{self.name} did not become healthy:\n{self.log_tail()}")

    def _wait_workers(self, deadline: float, expected: int = 2) -> None:
        while time.monotonic() < deadline and len(children(self.pid)) < expected:
            time.sleep(0.05)

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            # The session was created for this server alone, so its group is only its processes.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def children(pid: int) -> list[int]:
    """Direct child pids of ``pid`` (the gunicorn workers of a master)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    with contextlib.suppress(OSError):
        return [int(p) for p in path.read_text().split()]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            stat = (entry / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid == pid:
                found.append(int(entry.name))
    return sorted(found)


def rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` in KiB (0 when the process is gone)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def worker_rss(master_pid: int) -> dict[int, int]:
    """RSS (KiB) of each child of a gunicorn master."""
    return {pid: rss_kib(pid) for pid in children(master_pid)}


def python() -> str:
    return sys.executable


# -- CPU accounting (the machine may be shared: say how much CPU others took) -------------------

_TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one live process (0 when it is gone)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    return 0.0


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a gunicorn master and its live workers."""
    return proc_cpu_s(pid) + sum(proc_cpu_s(child) for child in children(pid))


def system_busy_s() -> float:
    """Non-idle CPU seconds of the whole machine since boot (all cores)."""
    with contextlib.suppress(OSError, ValueError):
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return (sum(fields[:8]) - idle) / _TICK
    return 0.0


def own_and_children_cpu_s() -> float:
    """CPU seconds of this process (its load-generator threads) and its reaped children (wrk)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


#: How long ``settle`` may wait for other tenants' work to stop (set by ``python -m bench``).
SETTLE = {"max_wait_s": 0.0, "threshold_cores": 0.3}


def busy_cores(sample_s: float = 1.0) -> float:
    """Cores' worth of CPU the whole machine used over ``sample_s`` seconds."""
    before = system_busy_s()
    time.sleep(sample_s)
    return (system_busy_s() - before) / sample_s


def settle(log: Any = None) -> dict[str, Any]:
    """Wait (at most ``SETTLE["max_wait_s"]``) until the machine is nearly idle.

    Called between measurements, when the benchmark's own servers are idle, so what is busy is
    someone else (e.g. another test run on a shared machine). Returns how long it waited and the
    load it saw last, so a disturbed measurement can be recognised in the results.
    """
    limit = float(SETTLE["max_wait_s"])
    if limit <= 0:
        return {"waited_s": 0.0, "busy_cores": None}
    started = time.monotonic()
    busy = busy_cores(0.5)
    told = False
    while busy > SETTLE["threshold_cores"] and time.monotonic() - started < limit:
        if log is not None and not told:
            log(f"  waiting for the machine to settle ({busy:.2f} cores busy elsewhere)")
            told = True
        busy = busy_cores(1.0)
    return {"waited_s": round(time.monotonic() - started, 1), "busy_cores": round(busy, 2)}
