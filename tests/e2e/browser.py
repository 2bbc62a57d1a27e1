"""The browser tests' one way to reach Debian's chromium through Playwright (never a browser Playwright downloads):
`sync_api = require_chromium()` at the top of a test module skips the module, saying why, where either is missing."""

from __future__ import annotations

import os
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"


def require_chromium() -> Any:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM} (apt-get install -y chromium; CI installs it)",
                    allow_module_level=True)
    return pytest.importorskip("playwright.sync_api",
                               reason="playwright is not installed (pip install -r requirements-dev.txt)")


def collect_problems(tab: Any, problems: list[str]) -> Any:
    """Record the tab's script errors and failed loads (console errors, page errors, CSP violations) in `problems`,
    which each test's page fixture asserts empty at the end."""
    tab.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    return tab
