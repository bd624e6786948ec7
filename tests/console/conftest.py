"""Fixtures of the console's end-to-end tests: a real devnet, the console process, and Debian's
Chromium driven by Playwright (which must never download a browser of its own).

Without /usr/bin/chromium or Playwright the browser tests are skipped — unless CI=true, in which
case they fail: CI must run them (`make browser` installs Chromium)."""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossdvp.paths import project_root
from crossdvp.process import ManagedProcess, free_port, port_open, start_process

CHROMIUM = Path("/usr/bin/chromium")
# Required on this machine's closed network: nothing may phone home, and there is no GPU or sandbox.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = project_root() / "test-artifacts" / "console"


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"the console's browser tests must run when CI=true: {reason}")
    pytest.skip(f"{reason}; set CI=true to make this a failure")


@pytest.fixture(scope="module")
def devnet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A whole devnet (anvil, ledger, 4 nodes, two parties), stopped by PID at the end."""
    from crossdvp.devnet import DevnetOptions, devnet_down, devnet_up

    directory = tmp_path_factory.mktemp("console-devnet")
    try:
        state = devnet_up(DevnetOptions(directory))  # stops what it started if it fails
    except BaseException:
        devnet_down(directory) if (directory / "devnet.json").exists() else None
        raise
    try:
        yield state
    finally:
        devnet_down(directory)


@pytest.fixture(scope="module")
def console_url(devnet: Any) -> Iterator[str]:
    """`crossdvp console --devnet DIR` as its own process, like an operator runs it."""
    port = free_port()
    proc: ManagedProcess = start_process(
        "console",
        [
            sys.executable,
            "-m",
            "crossdvp.cli",
            "console",
            "--devnet",
            str(devnet.directory),
            "--port",
            str(port),
        ],
        log_path=devnet.directory / "logs" / "console.log",
        ready=lambda: port_open("127.0.0.1", port),
        timeout_s=30,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser_context() -> Iterator[Any]:
    """A headless Chromium with a fresh profile, at a laptop's screen size."""
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is missing (run `make browser`)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install -e '.[dev]')")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="console-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1366, "height": 768},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser_context: Any) -> Iterator[Any]:
    page = browser_context.new_page()
    try:
        yield page
    finally:
        page.close()


@pytest.fixture(scope="module")
def desk(devnet: Any) -> Iterator[Any]:
    from crossdvp.client import Desk

    with Desk.from_devnet(devnet.directory) as d:
        yield d
