"""Benchmarks: `socialpulse bench NAME [--scale small|full]` writes bench/results/NAME.json.

Each measured configuration runs in its own subprocess with its own state folder and free ports, so
settings (read once at import by Dagster and Feast definitions) never leak between runs and the demo's
services are not disturbed.
"""

from __future__ import annotations

import json
import os
import platform as pyplatform  # not "platform": importing the bench.platform submodule rebinds that name here
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from socialpulse.runtime import OFFLINE_DEFAULTS
from socialpulse.services.manager import isolated_env

REPO = Path(__file__).resolve().parents[1]
BENCHES = ("build", "ingest", "moderation", "search", "trends", "soak", "feed", "analytics", "privacy", "captions")


def pct(values: list[float], q: float) -> float:
    """The q-quantile of seconds ``values``, in milliseconds (nearest rank; NaN when empty)."""
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000, 1) if values else float("nan")


class DrainWatch:
    """Watches what the drain has committed to bronze ``interactions``: every ``interval`` seconds it reads the
    Delta app-transaction version the drain records with each commit (the last ``ingest:events`` entry it
    holds, whose id carries the Redis server's millisecond clock). A batch answered at ``t1`` has landed at
    the first poll whose committed entry time is at least ``t1``."""

    def __init__(self, settings, interval: float = 0.25):
        import threading

        from socialpulse import lake
        from socialpulse.contracts import INTERACTIONS
        from socialpulse.ingest import EVENTS_STREAM

        self.uri = lake.table_uri(INTERACTIONS, settings)
        self.app_id = f"drain:{EVENTS_STREAM}:interactions"
        self.interval = interval
        self.polls: list[tuple[float, int]] = []  # (time, committed entry ms)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from deltalake import DeltaTable

        from socialpulse.drain import SEQ_FACTOR

        while not self._stop.is_set():
            try:
                version = DeltaTable(self.uri).transaction_version(self.app_id)
            except Exception:  # noqa: BLE001 - no table yet, or mid-commit: the next poll sees it
                version = None
            if version is not None:
                self.polls.append((time.time(), version // SEQ_FACTOR))
            self._stop.wait(self.interval)

    def __enter__(self) -> "DrainWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def committed_ms(self) -> int:
        return self.polls[-1][1] if self.polls else 0

    def landed_at(self, t1: float) -> float | None:
        t1_ms = int(t1 * 1000)
        return next((t for t, ms in self.polls if ms >= t1_ms), None)


def scale_configs(bench: str, scales: dict[str, list[dict]], scale: str) -> list[dict]:
    """The configurations of ``scale`` (a clear error naming the scales there are)."""
    if scale not in scales:
        raise ValueError(f"{bench} has scales {sorted(scales)}, not {scale!r}")
    return scales[scale]


def say(msg: str) -> None:
    """A progress line for the bench runner (indented under the bench's own)."""
    print(f"  {msg}", flush=True)


def timed(fn, *args, digits: int = 2, **kw):
    """``(fn(*args, **kw), seconds it took)``, the seconds rounded to ``digits``."""
    t = time.perf_counter()
    value = fn(*args, **kw)
    return value, round(time.perf_counter() - t, digits)


#: a bench plays thousands of users from one machine: the per-IP (and per-token) rate limits would refuse it
NO_RATE_LIMITS = {"SOCIALPULSE_RATE_LIMIT_INGEST_PER_MIN": "0", "SOCIALPULSE_RATE_LIMIT_UPLOADS_PER_MIN": "0",
                  "SOCIALPULSE_RATE_LIMIT_READS_PER_MIN": "0"}


def bench_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOCIALPULSE_")}
    env.update(isolated_env(home))
    env.update(OFFLINE_DEFAULTS)
    env.update(NO_RATE_LIMITS)
    return env


_TOKENS: dict[tuple, str] = {}


def token_for(user_id: str, role: str = "user", settings=None) -> str:
    """A bearer token for ``user_id`` from the embedded signer of ``settings`` (default: this process's state
    folder), cached: signing costs ~1 ms."""
    from socialpulse.auth import issue_token
    from socialpulse.settings import get_settings

    settings = settings or get_settings()
    key = (user_id, role, str(settings.home_abs))
    if key not in _TOKENS:
        _TOKENS[key] = issue_token(settings, user_id, role, ttl_s=7 * 24 * 3600)
    return _TOKENS[key]


def auth_headers(user_id: str, role: str = "user", settings=None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(user_id, role, settings)}"}


def run_in_subprocess(module: str, args: dict, progress) -> dict:
    """Run ``python -m bench.<module>`` with a fresh state folder; it prints one JSON line last."""
    # a service that was still finishing a write as it stopped must not cost the results: cleanup errors are ignored
    with tempfile.TemporaryDirectory(prefix=f"sp-bench-{module}-", ignore_cleanup_errors=True) as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        cmd = [sys.executable, "-m", f"bench.{module}", json.dumps(args)]
        proc = subprocess.Popen(cmd, cwd=REPO, env=bench_env(home), stdout=subprocess.PIPE, text=True)
        last = None
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            if line.startswith("{"):
                last = line
            elif line:
                progress(line)
        if proc.wait() != 0 or last is None:
            raise RuntimeError(f"bench.{module} {args} failed with exit code {proc.returncode}")
        return json.loads(last)


def run_main(main) -> None:
    """A bench subprocess's entry point: ``main(config from argv)`` printed as the last line (JSON); on failure
    the traceback, then exit 1 at once, and exit 0 at once on success (a library's leftover non-daemon thread
    must not keep a finished run alive)."""
    import traceback

    try:
        print(json.dumps(main(json.loads(sys.argv[1])), default=str), flush=True)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    os._exit(0)


def load_world(settings, cfg: dict, out: dict, progress) -> tuple:
    """Load the seed-7 synthetic world of ``cfg`` (users, posts, interactions, days) into bronze, ending
    yesterday (UTC); record its rows and ``load_s`` in ``out``; return its (first, last) day."""
    import datetime as dt

    from socialpulse.synthetic import load_synthetic

    end = dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
    start = end - dt.timedelta(days=cfg["days"] - 1)
    t = time.perf_counter()
    out["rows"] = load_synthetic(settings, users=cfg["users"], posts=cfg["posts"], interactions=cfg["interactions"],
                                 days=cfg["days"], seed=7, start=start, progress=progress)
    out["load_s"] = round(time.perf_counter() - t, 1)
    return start, end


def machine() -> dict:
    return {
        "cpus": os.cpu_count(),
        "platform": pyplatform.platform(),
        "python": pyplatform.python_version(),
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }


def run_benchmark(name: str, scale: str, out: Path, progress=print, **overrides) -> dict:
    """Run every configuration of bench NAME at ``scale`` (``overrides`` replace configuration values, for
    the benches whose ``configs`` take them, e.g. soak's minutes and rate) and write the results file."""
    if name not in BENCHES:
        raise ValueError(f"unknown benchmark {name!r}; known: {BENCHES}")
    from importlib import import_module

    mod = import_module(f"bench.{name}")
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    t0 = time.perf_counter()
    cfgs = mod.configs(scale, **overrides) if overrides else mod.configs(scale)
    runs = [run_in_subprocess(name, cfg, progress) for cfg in cfgs]
    result = {
        "benchmark": name,
        "scale": scale,
        "method": mod.METHOD,
        "machine": machine(),
        "started_at": started_at,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "runs": runs,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    progress(f"wrote {out}")
    return result
