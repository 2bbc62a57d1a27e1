"""`authwatch tenants import FILE` (issue 20, part 1) against real storage (Azurite): a 500-line CSV with 5 bad rows
adds 495 and names the 5, a re-run changes nothing, a changed name is an update, a write failure part-way loses
nothing and a re-run finishes the rest; JSON files, --dry-run and the file bounds.

Storage is the session's Azurite, shared with other tests: each test imports fresh GUIDs and looks only at them."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from pathlib import Path

import pytest

from shared.cli import main
from shared.tenants import fleet_import
from shared.tenants.config import TenantConfig
from shared.tenants.registry import TenantRegistry

CLIENT_ID = "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50"
IDENTITY = "0b7e6f1a-2c3d-4e5f-8a9b-0c1d2e3f4a5b"
HEADER = ("tenantId,name,credentialMode,clientId,managedIdentityClientId,secretSetting,certificateSetting,"
          "scheduleMinutes,tags,enabled")


@pytest.fixture
def storage(monkeypatch, storage_connection_string) -> str:
    monkeypatch.setenv("AUTHWATCH_STORAGE_CONNECTION_STRING", storage_connection_string)
    monkeypatch.setenv("AUTHWATCH_APP_CLIENT_ID", CLIENT_ID)  # what `tenants add` defaults to, import too
    monkeypatch.setenv("AZURE_CLIENT_ID", IDENTITY)
    return storage_connection_string


def registered(connection: str, ids: set[str]) -> dict[str, TenantConfig]:
    async def read() -> dict[str, TenantConfig]:
        async with TenantRegistry.from_connection_string(connection) as registry:
            return {config.tenant_id: config for config in await registry.list() if config.tenant_id in ids}

    return asyncio.run(read())


def fleet_csv(path: Path, count: int = 500) -> tuple[list[str], dict[int, str]]:
    """`count` data lines (lines 2 … count+1), five of them bad for different reasons: (the good ids, {line: why})."""
    suffix = uuid.uuid4().hex[:6]
    ids = [str(uuid.uuid4()) for _ in range(count)]
    lines = [HEADER]
    for index, tenant_id in enumerate(ids):
        mode = ("federated", "secret", "")[index % 3]
        secret = "AUTHWATCH_SECRET_FLEET" if mode == "secret" else ""
        lines.append(f'{tenant_id},"Customer {index:03d}, {suffix}",{mode},,,{secret},,{30 + index % 5},'
                     f"msp;tier{index % 3},true")
    bad = {
        12: (f"{ids[10][:-1]}x,Bad GUID,,,,,,,,", "tenantId: expected a GUID"),
        51: (f"{ids[49]},,,,,,,,,", "name: required"),
        102: (f"{ids[100]},Mode,password,,,,,,,", "credentialMode: 'password' is not one of"),
        203: (f"{ids[3]},Duplicate,,,,,,,,", f"{ids[3]} is already on line 5"),
        304: (f"{ids[302]},Schedule,,,,,,2,,", "scheduleMinutes: expected whole minutes between 5 and 1440"),
    }
    for line, (text, _) in bad.items():
        lines[line - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    broken = {line - 2 for line in bad}
    good = [tenant_id for index, tenant_id in enumerate(ids) if index not in broken]
    return good, {line: why for line, (_, why) in bad.items()}


def outcomes(out: str) -> dict[int, str]:
    return {int(found[1]): found[2] for found in re.finditer(r"^line (\d+) \S+: (.*)$", out, re.M)}


def test_a_500_line_csv_with_5_bad_rows_adds_495_and_reruns_are_idempotent(storage, tmp_path, capsys):
    path = tmp_path / "fleet.csv"
    good, bad = fleet_csv(path)
    assert len(good) == 495

    assert main(["tenants", "import", str(path)]) == 1  # rows were rejected
    captured = capsys.readouterr()
    lines = outcomes(captured.out)
    assert len(lines) == 500
    for line, why in bad.items():
        assert lines[line].startswith("rejected: ") and why in lines[line], (line, lines[line])
    assert sum(text == "added" for text in lines.values()) == 495
    assert captured.out.strip().splitlines()[-1] == "495 added, 0 updated, 0 unchanged, 5 rejected"
    progress = [line for line in captured.err.splitlines() if line.startswith("import  [")]
    assert progress and progress[-1] == "import  [####################] 495/495" and len(progress) <= 11

    stored = registered(storage, set(good))
    assert len(stored) == 495
    first = stored[good[0]]
    assert first.credential.mode == "federated" and first.credential.client_id == CLIENT_ID
    assert first.credential.managed_identity_client_id == IDENTITY  # defaults as `tenants add` takes them
    assert first.schedule_minutes == 30 and first.tags == ("msp", "tier0") and first.display_name.startswith(
        "Customer 000, ")
    assert stored[good[1]].credential.secret_setting == "AUTHWATCH_SECRET_FLEET"

    assert main(["tenants", "import", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == "0 added, 0 updated, 495 unchanged, 5 rejected"

    text = path.read_text(encoding="utf-8").replace("Customer 007,", "Customer seven,")
    path.write_text(text, encoding="utf-8")
    assert main(["tenants", "import", str(path)]) == 1
    out = capsys.readouterr().out
    assert outcomes(out)[9] == "updated (fields name)"
    assert out.strip().splitlines()[-1] == "0 added, 1 updated, 494 unchanged, 5 rejected"
    assert registered(storage, {good[7]})[good[7]].display_name.startswith("Customer seven,")


def test_a_write_failure_part_way_loses_nothing_and_a_rerun_finishes(storage, tmp_path, capsys, monkeypatch):
    path = tmp_path / "fleet.csv"
    ids = [str(uuid.uuid4()) for _ in range(60)]
    path.write_text("tenantId,name\n" + "".join(f"{tenant_id},Partial {index}\n" for index, tenant_id in
                                               enumerate(ids)), encoding="utf-8")
    failing = set(ids[5::7])
    original = TenantRegistry.add

    async def flaky(self, config, **kwargs):
        if config.tenant_id in failing:
            raise ConnectionResetError("the storage account went away")  # as a dropped connection surfaces
        return await original(self, config, **kwargs)

    monkeypatch.setattr(TenantRegistry, "add", flaky)
    assert main(["tenants", "import", str(path)]) == 1
    captured = capsys.readouterr()
    lines = outcomes(captured.out)
    failed = {ids[line - 2] for line, text in lines.items() if text.startswith("failed: ")}
    assert failed == failing and all("went away" in lines[ids.index(t) + 2] for t in failing)
    assert captured.out.strip().splitlines()[-1] == f"{60 - len(failing)} added, 0 updated, 0 unchanged, 0 rejected, " \
                                                    f"{len(failing)} failed"
    assert "run the same import again" in captured.err
    assert set(registered(storage, set(ids))) == set(ids) - failing  # the others were written

    monkeypatch.setattr(TenantRegistry, "add", original)
    assert main(["tenants", "import", str(path)]) == 0
    lines = outcomes(capsys.readouterr().out)
    assert {ids[line - 2] for line, text in lines.items() if text == "added"} == failing
    assert sum(text == "unchanged" for text in lines.values()) == 60 - len(failing)
    assert set(registered(storage, set(ids))) == set(ids)


def test_json_import_dry_run_and_an_update_of_the_credential(storage, tmp_path, capsys):
    a, b = str(uuid.uuid4()), str(uuid.uuid4())
    path = tmp_path / "fleet.json"
    items = [{"tenantId": a, "name": "Json A", "tags": ["eu", "gold"], "scheduleMinutes": 60},
             {"tenantId": b, "name": "Json B", "credentialMode": "secret", "secretSetting": "AUTHWATCH_SECRET_B",
              "enabled": False},
             {"tenantId": str(uuid.uuid4()), "name": "Typo", "sheduleMinutes": 5},
             "not an object"]
    path.write_text(json.dumps({"tenants": items}), encoding="utf-8")
    assert main(["tenants", "import", str(path), "--dry-run"]) == 1
    out = capsys.readouterr().out
    assert "item 1 " in out and "item 3" in out and "unknown column 'sheduleMinutes'" in out
    assert out.strip().splitlines()[-1] == "2 added, 0 updated, 0 unchanged, 2 rejected (dry run: nothing written)"
    assert registered(storage, {a, b}) == {}

    assert main(["tenants", "import", str(path), "-o", "json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert [row["outcome"] for row in result["rows"]] == ["added", "added", "rejected", "rejected"]
    stored = registered(storage, {a, b})
    assert stored[a].tags == ("eu", "gold") and stored[a].schedule_minutes == 60
    assert stored[b].enabled is False and stored[b].credential.secret_setting == "AUTHWATCH_SECRET_B"

    # Only what the file changes changes: b moves to federated (defaults from the environment), a keeps its tags.
    path.write_text(json.dumps([{"tenantId": a, "name": "Json A"},
                                {"tenantId": b, "name": "Json B", "credentialMode": "federated"}]), encoding="utf-8")
    assert main(["tenants", "import", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"item 1 {a}: unchanged" and lines[1] == f"item 2 {b}: updated (fields credential)"
    stored = registered(storage, {a, b})
    assert stored[b].credential.mode == "federated" and stored[b].credential.managed_identity_client_id == IDENTITY
    assert stored[a].tags == ("eu", "gold") and stored[b].enabled is False


def test_files_that_cannot_be_imported_are_refused_whole(storage, tmp_path, capsys, monkeypatch):
    cases = {
        "header.csv": ("tenantId,name,colour\n", "unknown column 'colour'"),
        "fleet.txt": ("tenantId,name\n", ".csv or .json"),
        "shape.json": ('{"customers": []}', "JSON list"),
        "broken.json": ("[{", "not valid JSON"),
    }
    for name, (text, why) in cases.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert main(["tenants", "import", str(tmp_path / name)]) == 2, name
        assert why in capsys.readouterr().err, name
    assert main(["tenants", "import", str(tmp_path / "missing.csv")]) == 2
    assert "cannot be read" in capsys.readouterr().err

    many = tmp_path / "many.csv"
    many.write_text("tenantId,name\n" + "".join(f"{uuid.UUID(int=i)},T{i}\n" for i in range(50_001)))
    assert main(["tenants", "import", str(many)]) == 2
    assert "more than 50,000 rows" in capsys.readouterr().err

    monkeypatch.setattr(fleet_import, "MAX_BYTES", 1024)
    big = tmp_path / "big.csv"
    big.write_text("tenantId,name\n" + f"{uuid.uuid4()},{'x' * 200}\n" * 10)
    assert main(["tenants", "import", str(big)]) == 2
    assert "larger than" in capsys.readouterr().err
