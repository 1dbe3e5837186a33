"""Headless Chromium for the page tests (Debian's ``/usr/bin/chromium``, which ``make install`` installs as root,
driven by playwright; no browser is ever downloaded), and where their screenshots go."""

from __future__ import annotations

import contextlib
import os
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
