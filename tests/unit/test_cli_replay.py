"""`authwatch replay` keeps its contract: files or folders in, collectedAt order, one JSON event per line."""

from __future__ import annotations

import json

from shared.cli import main
from tests.builders import block_policy, snapshot_json

KEYS = ["at", "tenantId", "type", "control", "severity", "summary", "details"]


def write(folder, name, **kwargs):
    path = folder / name
    path.write_text(json.dumps(snapshot_json(**kwargs)))
    return path


def test_replay_orders_by_collected_at_and_prints_json_lines(tmp_path, capsys):
    # File names sort the other way round: replay must follow collectedAt, not the names.
    write(tmp_path, "a.json", policies=[block_policy()], transport="False", collected_at="2026-11-23T09:00:00Z")
    write(tmp_path, "b.json", policies=[block_policy()], transport=True, collected_at="2026-11-23T08:00:00Z")
    assert main(["replay", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    events = [json.loads(line) for line in lines]
    assert events and all(list(event) == KEYS for event in events)
    assert {(e["type"], e["control"]) for e in events} == {("basic_auth.reenabled", "exo_smtp_auth_disabled"),
                                                          ("control.failed", "exo_smtp_auth_disabled")}
    assert all(e["at"] == "2026-11-23T09:00:00Z" for e in events)


def test_baseline_option_compares_the_first_snapshot_with_it(tmp_path, capsys):
    baseline = write(tmp_path, "baseline.json", policies=[block_policy()], collected_at="2026-11-01T00:00:00Z")
    current = write(tmp_path, "now.json", policies=[block_policy(state="disabled")],
                    collected_at="2026-11-23T08:00:00Z")
    assert main(["replay", str(current), "--baseline", str(baseline)]) == 0
    types = {json.loads(line)["type"] for line in capsys.readouterr().out.splitlines()}
    assert "drift.weakened" in types


def test_bad_input_exits_2_naming_the_file(tmp_path, capsys):
    bad = tmp_path / "broken.json"
    bad.write_text("{")
    assert main(["replay", str(bad)]) == 2
    assert "broken.json" in capsys.readouterr().err
    assert main(["replay", str(tmp_path / "missing")]) == 2
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["replay", str(empty)]) == 2
    assert "no *.json" in capsys.readouterr().err


def test_a_snapshot_saved_with_a_byte_order_mark_is_read(tmp_path, capsys):
    # PowerShell's Out-File and Notepad write UTF-8 with a BOM; the file is still the same JSON.
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps(snapshot_json()).encode())
    assert main(["evaluate", "--snapshot", str(bom), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["tenantId"]


def test_snapshots_that_are_not_newer_are_skipped_and_said(capsys):
    """The README's fixtures share one collectedAt: replay used to drop all but the first silently (issue 23)."""
    assert main(["replay", "tests/fixtures/snapshots/", "-o", "json"]) == 0
    err = capsys.readouterr().err
    assert "skipped 2 of 3 snapshot(s)" in err and "unreachable.json" in err


def test_the_shipped_series_tells_its_story(capsys):
    """tests/fixtures/series: SMTP AUTH switched on, the block set to report-only by an admin, both fixed."""
    assert main(["replay", "tests/fixtures/series/", "-o", "json"]) == 0
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.out.splitlines()]
    assert "skipped" not in captured.err
    kinds = [(event["at"][11:16], event["type"]) for event in events]
    assert ("08:15", "basic_auth.reenabled") in kinds and ("08:30", "drift.weakened") in kinds
    assert ("08:45", "control.recovered") in kinds
    weakened = next(event for event in events if event["type"] == "drift.weakened")
    assert "admin@contoso.com" in weakened["summary"]
