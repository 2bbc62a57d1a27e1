"""Bad input to `authwatch replay` / `authwatch evaluate` (property-based, hypothesis): whatever a snapshot file
holds — arbitrary JSON, arbitrary bytes, wrong types, truncated text — the CLI answers exit 2 with one line on
stderr naming the file and what is wrong, never a traceback, and writes nothing; valid input still evaluates."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from shared.cli import main
from tests.builders import block_policy, snapshot_json

FIXTURES = Path(__file__).parent.parent / "fixtures" / "snapshots"
EVENT_KEYS = ["at", "tenantId", "type", "control", "severity", "summary", "details"]
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- running the CLI -----------------------------------------------------------------------------------------------


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    """main() in-process with its own stdout/stderr: an uncaught exception escapes and fails the test."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@contextlib.contextmanager
def folder() -> Iterator[Path]:
    # One fresh folder per hypothesis example (tmp_path would be shared by all examples of one test).
    with tempfile.TemporaryDirectory(prefix="authwatch-fuzz-") as name:
        yield Path(name)


def listing(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else b"<dir>") for p in sorted(path.rglob("*"))}


def assert_refused(code: int, out: str, err: str, *, names: str, mentions: tuple[str, ...] = (),
                   command: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr: `authwatch <command>: error: <file>: …` naming the problem."""
    assert code == 2, (code, out, err)
    assert out == ""  # no partial events, no half report
    line = err.rstrip("\n")
    assert line and "\n" not in line, f"expected one line on stderr, got {err!r}"
    assert "Traceback" not in line
    assert line.startswith(f"authwatch {command}: error: "), line
    assert names in line, line
    for phrase in mentions:
        assert phrase in line, (phrase, line)


def write(path: Path, content: bytes | str | dict[str, Any]) -> Path:
    if isinstance(content, dict):
        content = json.dumps(content)  # ensure_ascii: a lone surrogate becomes the legal JSON escape "\ud800"
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


# --- strategies ----------------------------------------------------------------------------------------------------

scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=12))
json_values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                           st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                           max_leaves=15)
not_object = json_values.filter(lambda v: not isinstance(v, dict))
not_object_or_null = not_object.filter(lambda v: v is not None)
blank = st.text(alphabet=" \t\r\n", max_size=4)
bad_times = st.one_of(
    not_object.filter(lambda v: not isinstance(v, str)),
    st.text(max_size=20).filter(lambda s: "T" not in s),
    st.sampled_from(["2026-13-01T00:00:00Z", "2026-11-31T08:00:00Z", "2026-11-23T25:00:00Z", "T", "yesterdayT",
                     "2026-11-23T08:00:00+25:00", "0001-01-01T00:00:00+05:00", "0001-01-01T00:00:00Z",
                     "9999-12-31T23:59:59Z", "1969-12-31T23:59:59Z"]),
)
too_many_digits = "9" * 5000  # json.loads itself refuses numbers over 4300 digits (ValueError, not JSONDecodeError)

# One field of a valid snapshot made wrong: its path in the document, and values that are wrong there. The error
# message must name the path.
MUTATIONS: dict[tuple[str, ...], st.SearchStrategy[Any]] = {
    ("schemaVersion",): json_values.filter(lambda v: not (type(v) in (int, float) and v == 1)),
    # "t\ud800" is written as the legal JSON escape, but half a UTF-16 pair is not text.
    ("tenantId",): st.one_of(not_object.filter(lambda v: not isinstance(v, str)), blank, st.just("t\ud800")),
    ("collectedAt",): bad_times,
    ("graph",): not_object_or_null,
    ("exchange",): not_object_or_null,
    ("settings",): not_object_or_null,
    ("errors",): not_object_or_null,
    ("settings", "approvedExclusions"): not_object_or_null,
    ("settings", "approvedExclusions", "users"): st.one_of(
        not_object_or_null.filter(lambda v: not isinstance(v, list)),
        st.lists(not_object.filter(lambda v: not isinstance(v, str)), min_size=1, max_size=3)),
    ("settings", "enforcementWindowHours"): st.one_of(
        st.booleans(), st.text(max_size=5), st.integers(max_value=0), st.floats(max_value=0),
        st.sampled_from([math.inf, math.nan, 1e300, 10**30, 24 * 400])),
    ("errors", "graph.signIns"): not_object_or_null,
}
REQUIRED = {("schemaVersion",), ("tenantId",), ("collectedAt",)}


@st.composite
def broken_snapshots(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A realistic snapshot with one field made wrong (or a required one missing), plus that field's name."""
    document = snapshot_json(policies=[block_policy()], exportedBy={"tool": "fuzz"})
    path = draw(st.sampled_from(sorted(MUTATIONS)))
    value = draw(MUTATIONS[path])
    *parents, last = path
    target = document
    for key in parents:
        target = target.setdefault(key, {})
    if path in REQUIRED and draw(st.booleans()):
        del target[last]  # missing is as wrong as mistyped
    else:
        target[last] = value
    return document, ".".join(path)


@st.composite
def valid_snapshots(draw: st.DrawFn) -> dict[str, Any]:
    """Snapshots inside the contract: realistic sources, odd-but-legal values, unknown extra fields."""
    policy = block_policy(state=draw(st.sampled_from(["enabled", "disabled", "enabledForReportingButNotEnforced"])),
                          modifiedDateTime=draw(st.sampled_from(["2026-11-23T07:00:00Z", "2025-01-01T00:00:00Z",
                                                                 "not a date", None])))
    minute = draw(st.integers(0, 59))
    document = snapshot_json(
        policies=draw(st.sampled_from([[], [policy]])),
        transport=draw(st.sampled_from([True, False, "False", None])),
        collected_at=f"2026-11-23T{draw(st.integers(0, 23)):02d}:{minute:02d}:00Z",
        settings=draw(st.sampled_from([{}, {"enforcementWindowHours": 12},
                                       {"approvedExclusions": {"users": ["u1"], "nonsense": 3}}])),
        errors=draw(st.sampled_from([{}, {"graph.signIns": {"status": 403, "code": "x", "message": "m"}}])),
    )
    document["tenantId"] = draw(st.sampled_from(["8c1d0f4e-1a2b-4c3d-8e9f-00000000abcd", "tenant-ü-名前", "x"]))
    for key, value in draw(st.dictionaries(st.text(min_size=1, max_size=8).filter(lambda k: k not in document),
                                           json_values, max_size=3)).items():
        document[key] = value  # unknown extra fields are ignored (product.md)
    return document


# --- replay: bad input -----------------------------------------------------------------------------------------------

@SETTINGS
@given(broken_snapshots())
def test_replay_refuses_a_wrong_field_naming_it(case: tuple[dict[str, Any], str]) -> None:
    document, field = case
    with folder() as tmp:
        bad = write(tmp / "broken-snapshot.json", document)
        before = listing(tmp)
        code, out, err = run_cli(["replay", str(bad)])
        assert_refused(code, out, err, command="replay", names="broken-snapshot.json", mentions=(field,))
        assert listing(tmp) == before  # nothing written next to the input


@SETTINGS
@given(not_object)
def test_replay_refuses_a_document_that_is_not_an_object(value: Any) -> None:
    with folder() as tmp:
        bad = write(tmp / "scalar.json", json.dumps(value))
        code, out, err = run_cli(["replay", str(bad)])
        assert_refused(code, out, err, command="replay", names="scalar.json", mentions=("top level",))


@SETTINGS
@given(st.binary(max_size=200))
@example(b"\xff\xfe{\x00}\x00")  # UTF-16 with BOM
@example(b"{\"schemaVersion\": 1, \"tenantId\": \"\xc3\x28\"}")  # invalid UTF-8 inside an otherwise plausible file
@example(b"")
@example(b"\x00" * 16)
def test_replay_refuses_arbitrary_bytes(data: bytes) -> None:
    assume(b"schemaVersion" not in data or b"\xc3\x28" in data)  # random bytes never form a full snapshot anyway
    with folder() as tmp:
        bad = write(tmp / "noise.json", data)
        code, out, err = run_cli(["replay", str(bad)])
        assert_refused(code, out, err, command="replay", names="noise.json")


@SETTINGS
@given(st.data())
def test_replay_refuses_a_truncated_file(data: st.DataObject) -> None:
    text = json.dumps(snapshot_json(policies=[block_policy()]), indent=data.draw(st.sampled_from([None, 2])))
    cut = data.draw(st.integers(0, len(text) - 1))  # every proper prefix of a JSON object is invalid JSON
    with folder() as tmp:
        bad = write(tmp / "cut.json", text[:cut])
        code, out, err = run_cli(["replay", str(bad)])
        assert_refused(code, out, err, command="replay", names="cut.json", mentions=("not valid JSON",))


@pytest.mark.parametrize(("content", "phrase"), [
    ("[" * 100_000 + "]" * 100_000, "not valid JSON"),  # deeper than json's recursion limit
    ('{"schemaVersion": 1, "x": ' + too_many_digits + "}", "not valid JSON"),
    ('{"schemaVersion": ' + too_many_digits + "}", "not valid JSON"),
    ("NaN", "top level"),
    ('{"schemaVersion": 1, "tenantId": "t", "collectedAt": "2026-11-23T08:00:00Z", '
     '"settings": {"enforcementWindowHours": Infinity}}', "settings.enforcementWindowHours"),
    ('{"schemaVersion": 1, "tenantId": "t", "collectedAt": "2026-11-23T08:00:00Z", '
     '"settings": {"enforcementWindowHours": NaN}}', "settings.enforcementWindowHours"),
])
def test_replay_refuses_json_beyond_the_parsers_limits(tmp_path: Path, content: str, phrase: str) -> None:
    bad = write(tmp_path / "extreme.json", content)
    code, out, err = run_cli(["replay", str(bad)])
    assert_refused(code, out, err, command="replay", names="extreme.json", mentions=(phrase,))


@SETTINGS
@given(st.lists(valid_snapshots(), min_size=1, max_size=4), broken_snapshots(), st.data())
def test_one_bad_file_among_good_ones_stops_the_replay_before_any_output(
        good: list[dict[str, Any]], broken: tuple[dict[str, Any], str], data: st.DataObject) -> None:
    position = data.draw(st.integers(0, len(good)))
    with folder() as tmp:
        for index, document in enumerate(good):
            write(tmp / f"{index:02d}-good.json", document)
        write(tmp / f"{position:02d}-bad.json", broken[0])  # sorts among the good ones
        before = listing(tmp)
        code, out, err = run_cli(["replay", str(tmp)])
        assert_refused(code, out, err, command="replay", names=f"{position:02d}-bad.json", mentions=(broken[1],))
        assert listing(tmp) == before


@SETTINGS
@given(broken_snapshots())
def test_a_bad_baseline_file_is_refused_by_name(broken: tuple[dict[str, Any], str]) -> None:
    with folder() as tmp:
        good = write(tmp / "now.json", snapshot_json(policies=[block_policy()]))
        baseline = write(tmp / "the-baseline.json", broken[0])
        code, out, err = run_cli(["replay", str(good), "--baseline", str(baseline)])
        assert_refused(code, out, err, command="replay", names="the-baseline.json", mentions=(broken[1],))


@SETTINGS
@given(st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="/"), min_size=1,
               max_size=30))
def test_missing_inputs_are_named(name: str) -> None:
    with folder() as tmp:
        missing = tmp / ("missing-" + name)
        assume(not missing.exists())
        code, out, err = run_cli(["replay", str(missing)])
        assert_refused(code, out, err, command="replay", names=str(missing), mentions=("no such file",))


def test_unreadable_inputs_are_refused(tmp_path: Path) -> None:
    overlong = str(tmp_path / ("a" * 300))  # longer than a file name may be: the OS refuses to even look
    code, out, err = run_cli(["replay", overlong])
    assert_refused(code, out, err, command="replay", names=overlong, mentions=("too long",))
    empty = tmp_path / "empty"
    empty.mkdir()
    code, out, err = run_cli(["replay", str(empty)])
    assert_refused(code, out, err, command="replay", names="empty", mentions=("no *.json",))
    (tmp_path / "looks-like.json").mkdir()  # a folder named *.json inside a replayed folder
    code, out, err = run_cli(["replay", str(tmp_path)])
    assert_refused(code, out, err, command="replay", names="looks-like.json", mentions=("cannot read",))


# --- evaluate: bad input ---------------------------------------------------------------------------------------------

@SETTINGS
@given(st.one_of(broken_snapshots(), not_object.map(lambda v: (v, "top level"))))
def test_evaluate_refuses_wrong_documents_naming_the_field(case: tuple[Any, str]) -> None:
    document, field = case
    with folder() as tmp:
        bad = write(tmp / "snap.json", json.dumps(document))
        for fmt in ("json", "table"):
            code, out, err = run_cli(["evaluate", "--snapshot", str(bad), "--format", fmt])
            assert_refused(code, out, err, command="evaluate", names="snap.json", mentions=(field,))


@SETTINGS
@given(st.binary(max_size=200))
@example(b"{")
@example(b"\xef\xbb\xbf")  # a bare UTF-8 byte-order mark
def test_evaluate_refuses_arbitrary_bytes(data: bytes) -> None:
    assume(b"schemaVersion" not in data)
    with folder() as tmp:
        bad = write(tmp / "noise.json", data)
        code, out, err = run_cli(["evaluate", "--snapshot", str(bad), "--format", "json"])
        assert_refused(code, out, err, command="evaluate", names="noise.json")


# --- valid input still works -----------------------------------------------------------------------------------------

@SETTINGS
@given(st.lists(valid_snapshots(), min_size=1, max_size=4))
def test_valid_snapshots_replay_and_evaluate(documents: list[dict[str, Any]]) -> None:
    with folder() as tmp:
        for index, document in enumerate(documents):
            write(tmp / f"{index}.json", document)
        code, out, err = run_cli(["replay", str(tmp)])
        # The only thing a valid series may say on stderr: snapshots skipped for sharing a time (one line).
        assert code == 0 and (err == "" or (err.startswith("authwatch replay: skipped ") and err.count("\n") == 1)), err
        events = [json.loads(line) for line in out.splitlines()]
        assert all(list(event) == EVENT_KEYS for event in events)
        assert [e["at"] for e in events] == sorted(e["at"] for e in events)  # collectedAt order
        code, out, err = run_cli(["evaluate", "--snapshot", str(tmp / "0.json"), "--format", "json"])
        assert code == 0 and err == "", err
        report = json.loads(out)
        assert report["tenantId"] == documents[0]["tenantId"] and report["results"]


def test_extreme_dates_inside_microsoft_data_still_replay(tmp_path: Path) -> None:
    # A legal snapshot: dates inside Microsoft objects are parsed leniently, so this must evaluate (exit 0).
    write(tmp_path / "late.json", snapshot_json(policies=[block_policy(modifiedDateTime="9999-12-31T23:00:00Z")]))
    code, out, err = run_cli(["replay", str(tmp_path / "late.json")])
    assert code == 0 and err == ""


# --- the real console entry: no traceback reaches a person -----------------------------------------------------------

@pytest.mark.parametrize("content", [
    b"[" * 100_000,
    b'{"schemaVersion": 1, "tenantId": "t", "collectedAt": "0001-01-01T00:00:00+05:00"}',
    b"\xff\xfe\x00garbage",
    b'{"schemaVersion": 1, "tenantId": "t", "collectedAt": "2026-11-23T08:00:00Z", "graph": []}',
    b'{"schemaVersion": 1, "tenantId": "t\\ud800", "collectedAt": "2026-11-23T08:00:00Z"}',  # table format too
])
def test_console_script_prints_one_line_and_no_traceback(tmp_path: Path, content: bytes) -> None:
    bad = write(tmp_path / "bad.json", content)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    for argv in (["replay", str(bad)], ["evaluate", "--snapshot", str(bad)]):
        done = subprocess.run([sys.executable, "-m", "shared.cli", *argv], capture_output=True, text=True,
                              timeout=60, env=env, cwd=Path(__file__).parents[2])
        assert done.returncode == 2, done.stderr
        assert done.stdout == "" and "Traceback" not in done.stderr
        assert done.stderr.count("\n") == 1 and "bad.json" in done.stderr
