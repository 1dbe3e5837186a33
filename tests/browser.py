"""Headless Chromium for the page tests (Debian's ``/usr/bin/chromium``, which ``make install`` installs as root,
driven by playwright; no browser is ever downloaded), where their screenshots go, and the real API process (and
CLI environment) those tests and the CLI tests run against."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
#: without the background-networking flags Chromium dials out at start, and this machine refuses it
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def chromium(profile: Path):
    """A browser context with a fresh profile in ``profile``; a missing Chromium fails the test, saying why."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"no Chromium at {CHROMIUM}: run `make install` (as root it installs Debian's chromium package)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900}, device_scale_factor=1)
        try:
            yield context
        finally:
            context.close()


def settings_env(settings) -> dict[str, str]:
    """This process's environment pointed at ``settings``' stores (for an API or CLI process of a test's own);
    no DAGSTER_HOME, so a CLI takes the one under the settings' home."""
    env = {**os.environ, "SOCIALPULSE_HOME": str(settings.home), "SOCIALPULSE_POSTGRES_DSN": settings.postgres,
           "SOCIALPULSE_REDIS_URL": settings.redis, "SOCIALPULSE_MLFLOW_TRACKING_URI": settings.mlflow}
    env.pop("DAGSTER_HOME", None)
    return env


@contextlib.contextmanager
def api_process(settings, log_dir: Path, timeout_s: float = 90):
    """A real API process (uvicorn) on a free 127.0.0.1 port, on ``settings``' stores; yields its base URL once
    ``/healthz`` answers, and is stopped by its PID. Its log goes to ``log_dir/api.log``."""
    from socialpulse.services.manager import free_port

    port = free_port()
    code = ("import uvicorn; from serving.app import create_app; "
            f"uvicorn.run(create_app(warm=False), host='127.0.0.1', port={port}, log_level='warning')")
    log = (Path(log_dir) / "api.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=settings_env(settings), stdout=log,
                            stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, f"the API exited ({proc.returncode}); see {log.name}"
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"the API did not answer in {timeout_s:g} s; see {log.name}"
            time.sleep(0.3)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def artifact(name: str) -> Path:
    """A test artefact's path (``SOCIALPULSE_TEST_ARTIFACTS``, default ``tests/artifacts/``)."""
    folder = Path(os.environ.get("SOCIALPULSE_TEST_ARTIFACTS") or ROOT / "tests" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def load_dashboard(context, url: str):
    """Open a dashboard page and wait until it says it has drawn everything; returns the page and every URL it
    asked for. Page errors and console errors fail the test."""
    page = context.new_page()
    requests, errors = [], []
    page.on("request", lambda req: requests.append(req.url))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("body[data-ready]", state="attached", timeout=30_000)
    ready = page.get_attribute("body", "data-ready")
    assert ready == "1", page.inner_text("#page-error")
    assert errors == []
    return page, requests
