"""Every command in the README's code blocks runs as written (issue 23): read from the README itself, so a command
added there without working fails here. Commands run in a scratch folder that sees the repo's `.venv`, `tests` and
`node_modules` (what a fresh clone has after `make install`), so files they write (`--out fleet.html`) land there.

Each README command is one of: run (exit 0, output that says something), served (`serve`: starts, answers its
dashboard, stops on Ctrl-C), or not runnable here for a reason stated below (it needs a real tenant or Azure, or it
is the very `make test` running this file). A command that fits none of them fails the test, so the README cannot
grow a command nobody checked."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CODE_BLOCK = re.compile(r"```(?:sh|bash|shell)\n(.*?)```", re.S)

# Not run here, and why. Matched by prefix.
NOT_HERE = {
    "make demo": "its command, `authwatch demo`, is run by tests/e2e/test_demo.py",
    "make test": "this is `make test`",
    "azd ": "needs an Azure subscription",
    ".venv/bin/authwatch tenants add --tenant <": "needs a real tenant's id and its admin's consent",
    ".venv/bin/authwatch collect --tenant <": "needs a real tenant's id and credential",
    "export ": "sets variables for the commands after it",
    "curl ": "talks to a deployed function app",
    "az ": "needs an Azure subscription",
}


def readme_commands() -> list[str]:
    commands = []
    for block in CODE_BLOCK.findall((ROOT / "README.md").read_text(encoding="utf-8")):
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()  # the README's trailing comments
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def kind(command: str) -> str:
    if any(command.startswith(prefix) for prefix in NOT_HERE):
        return "not here"
    if command.startswith(".venv/bin/authwatch serve"):
        return "served"
    if command.startswith(".venv/bin/authwatch "):
        return "run"
    return "unknown"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("readme")
    for name in (".venv", "tests", "node_modules"):
        (folder / name).symlink_to(ROOT / name)
    return folder


def environment() -> dict[str, str]:
    env = {**os.environ, "COLUMNS": "200"}
    for name in list(env):
        if name.startswith("AUTHWATCH_"):
            env.pop(name)  # a newcomer's shell has none of these
    return env


def test_every_readme_command_is_known():
    commands = readme_commands()
    assert len(commands) >= 6
    assert [c for c in commands if kind(c) == "unknown"] == []


@pytest.mark.parametrize("command", [c for c in readme_commands() if kind(c) == "run"])
def test_the_readme_command_runs_as_written(scratch, command):
    done = subprocess.run(shlex.split(command), cwd=scratch, env=environment(), capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, f"{command}\nstdout: {done.stdout[-2000:]}\nstderr: {done.stderr[-2000:]}"
    assert done.stdout.strip() or any(scratch.iterdir()), command
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("command", [c for c in readme_commands() if kind(c) == "served"])
def test_the_readme_serve_command_starts_answers_and_stops(scratch, command):
    process = subprocess.Popen(shlex.split(command), cwd=scratch, env=environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        url = None
        for line in process.stdout:  # type: ignore[union-attr]
            found = re.search(r"Dashboard: (http://\S+/dashboard)", line)
            if found:
                url = found.group(1)
                break
            assert time.monotonic() < deadline, "serve did not start within 180 s"
        assert url, f"serve ended before printing its address: {process.stderr.read()[-2000:]}"  # type: ignore
        with urllib.request.urlopen(url, timeout=10) as answer:
            assert answer.status == 200 and b"authwatch" in answer.read().lower()
    finally:
        process.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            process.wait(timeout=60)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0
