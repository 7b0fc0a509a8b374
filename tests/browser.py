"""A real browser for the tests: Debian's chromium, installed when missing.

No Python wheel ships a browser, and Playwright's own download is refused on these
machines, so the tests drive the system's chromium through Playwright
(`executable_path`). On a fresh machine (the tests run as root there) it is installed
with apt-get; elsewhere the test says what to install.
"""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
# As the machines' notes advise: no sandbox as root, and no background networking (the
# closed network refuses Chromium's own connections).
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]


def _found() -> str | None:
    return next((path for path in map(shutil.which, CANDIDATES) if path), None)


def chromium_binary() -> str:
    found = _found()
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail("The browser tests need Chromium: install it (Debian: `apt-get install chromium`) or run as root "
                    "so that the tests install it.")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1200)
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(command)}` failed: {done.stderr[-2000:]}")
    found = _found()
    if not found:
        pytest.fail("apt-get installed chromium, but no chromium is on the PATH.")
    return found
