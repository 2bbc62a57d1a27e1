"""Exceptions stored with the tenant's configuration (issue 21, part 1), against real Azurite: add, list, extend and
remove through the service functions (shared/tenants/exceptions_service.py) and through `authwatch exceptions`;
refused input writes nothing (no registry write, no change marker, no history row); every change is in the tenant's
history with who made it, and never becomes an alert; the exceptions reach the worker's snapshot settings through the
queue message (and through the registry when the message is too big to carry them)."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from azure.data.tables import TableServiceClient, UpdateMode

from shared.cli import main
from shared.collect.credentials import CredentialSpec
from shared.cycle.fleet import MESSAGE_CONFIG_CHARS, Fleet, evaluate_registered, evaluation_message, fan_out
from shared.exceptions import DEFAULT_MAX_DAYS, DEFAULT_REMINDER_DAYS, ExceptionError
from shared.model import format_time
from shared.storage.tenant_store import REGISTRY_ROW, TenantStore
from shared.storage.tenant_store import TABLE as STATE_TABLE
from shared.tenants import exceptions_service as service
from shared.tenants.config import RegistryError, TenantConfig
from shared.tenants.registry import PARTITION, TABLE, TenantRegistry
from tests.conftest import fleet_for

APP = {"clientId": "7d1e9b2c-3a4f-4e5d-8c6b-0a1b2c3d4e5f", "clientSecret": "exceptions-secret"}
SECRET_SETTING = "AUTHWATCH_EXCEPTIONS_SECRET"
NOW = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
SMTP = "exo_smtp_auth_disabled"


def spec() -> CredentialSpec:
    return CredentialSpec(mode="secret", client_id=APP["clientId"], secret_setting=SECRET_SETTING)


def raw(**changes: Any) -> dict[str, Any]:
    """A valid exception to add at NOW."""
    return {"control": SMTP, "scope": {"mailboxes": ["scanner@contoso.com"]}, "owner": "Mail team",
            "reason": "The copier cannot do OAuth until its firmware update", "createdBy": "alice@msp.example",
            "expiresAt": format_time(NOW + timedelta(days=30)), **changes}


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


async def register(connection: str, tenant_id: str, **fields: Any) -> None:
    async with TenantRegistry.from_connection_string(connection) as registry:
        await registry.create()
        await registry.add(TenantConfig(tenant_id=tenant_id, display_name=fields.pop("name", "Contoso Exceptions"),
                                        credential=spec(), **fields))


def registry_row(connection: str, tenant_id: str) -> dict[str, Any]:
    with TableServiceClient.from_connection_string(connection) as client:
        entity = client.get_table_client(TABLE).get_entity(PARTITION, tenant_id)
        return {"etag": entity.metadata["etag"], **dict(entity)}


def partition(connection: str, tenant_id: str) -> dict[str, dict[str, Any]]:
    """The tenant's rows in the state table (the change marker, history rows …) by RowKey."""
    with TableServiceClient.from_connection_string(connection) as client:
        return {entity["RowKey"]: dict(entity) for entity in client.get_table_client(STATE_TABLE).query_entities(
            "PartitionKey eq @tenant", parameters={"tenant": tenant_id})}


async def history(connection: str, tenant_id: str) -> list[dict[str, Any]]:
    async with TenantStore.from_connection_string(connection) as store:
        return await store.history(tenant_id, limit=50)


@pytest.fixture
def tenant(storage_connection_string: str) -> str:
    tenant_id = str(uuid.uuid4())
    run(register(storage_connection_string, tenant_id, approved_exclusions={"users": ["break-glass@contoso.com"]}))
    return tenant_id


def with_registry(connection: str, work: Any) -> Any:
    async def go() -> Any:
        async with TenantRegistry.from_connection_string(connection) as registry:
            return await work(registry)

    return run(go())


# --- the service functions ------------------------------------------------------------------------------------------

def test_add_list_extend_remove_each_change_in_the_history_with_who(storage_connection_string, tenant):
    connection = storage_connection_string
    added = with_registry(connection, lambda r: service.add_exception(r, tenant, raw(), now=NOW))
    assert added["id"].startswith("exc-") and len(added["id"]) == 12
    assert added["createdAt"] == format_time(NOW) and added["createdBy"] == "alice@msp.example"
    assert added["scope"] == {"mailboxes": ["scanner@contoso.com"]} and added["status"] == "active"
    version_after_add = registry_row(connection, tenant)["ConfigVersion"]
    assert partition(connection, tenant)[REGISTRY_ROW]["ConfigVersion"] == version_after_add  # the worker hears of it

    listed = with_registry(connection, lambda r: service.exceptions_of(r, tenant, now=NOW + timedelta(days=25)))
    assert listed["maxExceptionDays"] == DEFAULT_MAX_DAYS and listed["exceptionReminderDays"] == DEFAULT_REMINDER_DAYS
    mine, legacy = listed["exceptions"]
    assert mine["id"] == added["id"] and mine["daysLeft"] == 5 and mine["expiringSoon"] and not mine["expired"]
    assert mine["status"] == "expiring soon" and mine["legacy"] is False
    # The older approvedExclusions keep working, and show as an exception without owner or expiry.
    assert legacy["legacy"] is True and legacy["owner"] is None and legacy["expiresAt"] is None
    assert legacy["scope"] == {"users": ["break-glass@contoso.com"]}

    later = NOW + timedelta(days=20)
    until = format_time(later + timedelta(days=100))
    extended = with_registry(connection, lambda r: service.extend_exception(r, tenant, added["id"], until,
                                                                           by="bob@msp.example", now=later))
    assert extended["expiresAt"] == until and extended["createdAt"] == added["createdAt"]
    removed = with_registry(connection, lambda r: service.remove_exception(r, tenant, added["id"], by="carol",
                                                                          now=later + timedelta(hours=1)))
    assert removed["removed"] is True and removed["id"] == added["id"]
    config = with_registry(connection, lambda r: r.get(tenant))
    assert config.exceptions == [] and config.approved_exclusions == {"users": ["break-glass@contoso.com"]}

    changes = [event for event in run(history(connection, tenant)) if event["type"] == "exception.changed"]
    assert [(e["details"]["action"], e["details"]["by"]) for e in changes] == [
        ("removed", "carol"), ("extended", "bob@msp.example"), ("added", "alice@msp.example")]  # newest first
    assert all(e["pending"] is False for e in changes)  # history only: no alert is ever sent for them
    assert all(e["control"] == SMTP and e["details"]["exception"]["id"] == added["id"] for e in changes)
    assert changes[1]["details"]["previousExpiresAt"] == added["expiresAt"]
    assert changes[1]["details"]["exception"]["expiresAt"] == until
    assert "added by alice@msp.example" in changes[2]["summary"]


@pytest.mark.parametrize(("change", "field"), [
    ({"expiresAt": None}, "expiresAt"),                                               # missing expiry
    ({"expiresAt": format_time(NOW + timedelta(days=DEFAULT_MAX_DAYS + 1))}, "expiresAt"),  # past maxExceptionDays
    ({"expiresAt": "2026-11-30"}, "expiresAt"),                                       # in the past
    ({"expiresAt": "9999-12-31T23:59:59-05:00"}, "expiresAt"),                        # past datetime's range in UTC
    ({"control": "exo_smtp_auth_everywhere"}, "control"),                             # unknown control
    ({"control": None}, "control"),
    ({"scope": {"people": ["x"]}}, "scope.people"),                                   # unknown scope kind
    ({"scope": {"users": "x"}}, "scope.users"),
    ({"owner": " "}, "owner"),
    ({"reason": None}, "reason"),
    ({"createdBy": "x" * 501}, "createdBy"),
    ({"id": "has space"}, "id"),
    ({"createdAt": format_time(NOW)}, "createdAt"),                                   # set by authwatch itself
    ({"note": "x"}, "note"),                                                          # unknown field
])
def test_refused_input_names_the_field_and_writes_nothing(storage_connection_string, tenant, change, field):
    connection = storage_connection_string
    row, rows = registry_row(connection, tenant), partition(connection, tenant)
    body = {key: value for key, value in raw(**change).items() if value is not None or key not in change}
    with pytest.raises(ExceptionError) as refused:
        with_registry(connection, lambda r: service.add_exception(r, tenant, body, now=NOW))
    assert str(refused.value).startswith(f"{field}:"), str(refused.value)
    assert registry_row(connection, tenant) == row and partition(connection, tenant) == rows


def test_duplicates_and_unknown_ids_are_refused_without_a_write(storage_connection_string, tenant):
    connection = storage_connection_string
    with_registry(connection, lambda r: service.add_exception(r, tenant, raw(id="copier"), now=NOW))
    row, rows = registry_row(connection, tenant), partition(connection, tenant)
    for duplicate, field in ((raw(id="copier", scope={"users": ["someone"]}), "id"), (raw(id="copier-2"), "scope")):
        with pytest.raises(ExceptionError, match=f"^{field}:"):
            with_registry(connection, lambda r: service.add_exception(r, tenant, duplicate, now=NOW))
    with pytest.raises(LookupError, match="no exception 'nope'"):
        with_registry(connection, lambda r: service.extend_exception(r, tenant, "nope", "2027-01-15", by="bob",
                                                                     now=NOW))
    with pytest.raises(LookupError, match="no exception"):
        with_registry(connection, lambda r: service.remove_exception(r, tenant, "nope", by="bob", now=NOW))
    for when, field in (("2026-12-20", "expiresAt"), (format_time(NOW + timedelta(days=181)), "expiresAt")):
        with pytest.raises(ExceptionError, match=f"^{field}:"):  # not later than now / past the tenant's bound
            with_registry(connection, lambda r: service.extend_exception(r, tenant, "copier", when, by="bob",
                                                                         now=NOW))
    with pytest.raises(ExceptionError, match="^by:"):
        with_registry(connection, lambda r: service.remove_exception(r, tenant, "copier", by=" ", now=NOW))
    with pytest.raises(ExceptionError, match="^exceptionId: legacy-approvedExclusions"):
        with_registry(connection, lambda r: service.remove_exception(r, tenant, service.LEGACY_ID, by="bob", now=NOW))
    with pytest.raises(LookupError, match="no tenant"):
        with_registry(connection, lambda r: service.add_exception(r, str(uuid.uuid4()), raw(), now=NOW))
    assert registry_row(connection, tenant) == row and partition(connection, tenant) == rows


def test_concurrent_changes_all_land_and_leave_no_stray_history(storage_connection_string, tenant):
    """Writers racing on one tenant: the ETag makes the losers read again and try again; a loser's history row is
    taken back, so the history holds exactly the changes that were made."""
    connection = storage_connection_string

    async def race() -> list[Any]:
        async with TenantRegistry.from_connection_string(connection) as registry:
            adds = [service.add_exception(registry, tenant, raw(id=f"race-{n}", scope={"users": [f"u{n}"]}), now=NOW)
                    for n in range(4)]
            twins = [service.add_exception(registry, tenant, raw(id="twin", scope={"groups": [f"g{n}"]}), now=NOW)
                     for n in range(2)]
            return await asyncio.gather(*adds, *twins, return_exceptions=True)

    outcomes = run(race())
    assert all(isinstance(outcome, dict) for outcome in outcomes[:4]), outcomes
    twins = outcomes[4:]
    assert sum(isinstance(outcome, dict) for outcome in twins) == 1, twins  # one id, one exception
    assert any(isinstance(outcome, ExceptionError) and str(outcome).startswith("id:") for outcome in twins), twins
    config = with_registry(connection, lambda r: r.get(tenant))
    ids = sorted(item["id"] for item in config.exceptions)
    assert ids == ["race-0", "race-1", "race-2", "race-3", "twin"]
    recorded = sorted(e["details"]["exception"]["id"] for e in run(history(connection, tenant))
                      if e["type"] == "exception.changed")
    assert recorded == ids


def test_the_tenant_sets_its_own_bounds_and_whole_config_writes_cannot_touch_exceptions(storage_connection_string,
                                                                                       tenant):
    connection = storage_connection_string
    with_registry(connection, lambda r: r.update(tenant, {"maxExceptionDays": 30, "exceptionReminderDays": 0}))
    with pytest.raises(ExceptionError, match="^expiresAt: at most 30 days"):
        with_registry(connection, lambda r: service.add_exception(
            r, tenant, raw(expiresAt=format_time(NOW + timedelta(days=31))), now=NOW))
    added = with_registry(connection, lambda r: service.add_exception(
        r, tenant, raw(expiresAt=format_time(NOW + timedelta(days=30))), now=NOW))
    soon = with_registry(connection, lambda r: service.exceptions_of(r, tenant, now=NOW + timedelta(days=29)))
    assert soon["exceptions"][0]["expiringSoon"] is False  # reminder days 0: never "soon"
    # PATCH-like writes of the whole configuration keep the exceptions and cannot set them.
    for changes, field in (({"exceptions": []}, "exceptions"), ({"maxExceptionDays": 0}, "maxExceptionDays"),
                           ({"exceptionReminderDays": 91}, "exceptionReminderDays"),
                           ({"maxExceptionDays": True}, "maxExceptionDays")):
        with pytest.raises(RegistryError, match=f"^{field}:"):
            with_registry(connection, lambda r: r.update(tenant, changes))
    config = with_registry(connection, lambda r: r.update(tenant, {"displayName": "Contoso renamed"}))
    assert [item["id"] for item in config.exceptions] == [added["id"]] and config.max_exception_days == 30
    with pytest.raises(RegistryError, match="^exceptions:"):
        TenantConfig.from_json({name: config.to_json()[name] for name in ("displayName", "credential", "exceptions")}
                               | {"tenantId": str(uuid.uuid4())}, config_only=True)


def test_an_old_row_without_the_new_columns_reads_as_no_exceptions(storage_connection_string, tenant):
    connection = storage_connection_string
    with_registry(connection, lambda r: service.add_exception(r, tenant, raw(), now=NOW))
    with TableServiceClient.from_connection_string(connection) as client:
        table = client.get_table_client(TABLE)
        entity = dict(table.get_entity(PARTITION, tenant))
        for column in ("Exceptions", "MaxExceptionDays", "ExceptionReminderDays"):
            entity.pop(column)
        table.upsert_entity(entity, mode=UpdateMode.REPLACE)  # as a version before exceptions wrote it
    config = with_registry(connection, lambda r: r.get(tenant))
    assert config.exceptions == [] and config.max_exception_days == DEFAULT_MAX_DAYS
    assert config.exception_reminder_days == DEFAULT_REMINDER_DAYS
    assert config.settings() == {"approvedExclusions": {"users": ["break-glass@contoso.com"], "groups": [],
                                                        "roles": [], "applications": [], "locations": [],
                                                        "guestOrExternalUserTypes": []}}


# --- into the worker's snapshot ---------------------------------------------------------------------------------------

@pytest.fixture
def world(simulator_for, storage_connection_string):
    tenants = [str(uuid.uuid4()) for _ in range(2)]
    sim = simulator_for({"app": dict(APP), "tenants": [{"tenantId": tenant, "displayName": f"Excepted {n}"}
                                                      for n, tenant in enumerate(tenants)]})
    connection = storage_connection_string

    def fleet() -> Fleet:
        return fleet_for(connection, sim, {SECRET_SETTING: APP["clientSecret"]})

    return {"tenants": tenants, "fleet": fleet}


def test_exceptions_ride_the_queue_message_into_the_snapshot_settings(world):
    small, big = world["tenants"]

    async def go() -> None:
        fleet = world["fleet"]()
        try:
            await fleet.create()
            now = datetime.now(timezone.utc)
            for tenant in (small, big):
                await fleet.registry.add(TenantConfig(tenant_id=tenant, display_name=f"Tenant {tenant[:4]}",
                                                      credential=spec()))
            await fleet.registry.update(small, {"exceptionReminderDays": 14})
            added = await service.add_exception(fleet.registry, small, {**raw(), "expiresAt": format_time(
                now + timedelta(days=30))}, now=now)
            # Enough exceptions that the configuration no longer fits in a message (the worker reads the registry).
            for n in range(40):
                await service.add_exception(fleet.registry, big, {
                    **raw(), "id": f"bulk-{n}", "scope": {"users": [f"user{n}@contoso.com"]}, "reason": "r" * 300,
                    "expiresAt": format_time(now + timedelta(days=30))}, now=now)

            await fan_out(fleet, now=now)
            messages = {m["tenantId"]: m for m in await fleet.evaluations.receive_all(limit=100)}
            carried = messages[small]["config"]
            assert carried["exceptions"][0]["id"] == added["id"] and carried["exceptionReminderDays"] == 14
            assert "maxExceptionDays" not in carried  # the worker does not need it
            assert "config" not in messages[big]  # too big to carry: over MESSAGE_CONFIG_CHARS
            assert len(json.dumps((await fleet.registry.get(big)).worker_json())) > MESSAGE_CONFIG_CHARS

            for tenant, expected in ((small, [added["id"]]), (big, [f"bulk-{n}" for n in range(40)])):
                outcome = await evaluate_registered(fleet, tenant, now=now, message=messages[tenant])
                assert outcome is not None and outcome.failure is None and outcome.snapshot is not None
                settings = outcome.snapshot.settings
                assert [item["id"] for item in settings["exceptions"]] == expected
                assert settings["exceptionReminderDays"] == (14 if tenant == small else DEFAULT_REMINDER_DAYS)
            # The message the API's "evaluate now" sends carries the same.
            config = await fleet.registry.get(small)
            assert evaluation_message(config, now, "api")["config"]["exceptions"] == config.exceptions
        finally:
            await fleet.close()

    run(go())


# --- the CLI --------------------------------------------------------------------------------------------------------

class Terminal:
    """stdin as a person's terminal (remove asks for confirmation there)."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def cli_tenant(monkeypatch, storage_connection_string) -> tuple[str, str]:
    monkeypatch.setenv("AUTHWATCH_STORAGE_CONNECTION_STRING", storage_connection_string)
    tenant_id, name = str(uuid.uuid4()), f"Fabrikam Exceptions {uuid.uuid4().hex[:6]}"
    run(register(storage_connection_string, tenant_id, name=name))
    return tenant_id, name


def test_the_cli_adds_lists_extends_and_removes(cli_tenant, storage_connection_string, capsys, monkeypatch):
    tenant_id, name = cli_tenant
    monkeypatch.setattr("getpass.getuser", lambda: "os-user")
    expires = (datetime.now(timezone.utc) + timedelta(days=10)).date().isoformat()
    assert main(["exceptions", "add", name, "--control", SMTP, "--mailbox", "scanner@contoso.com", "--mailbox",
                 "fax@contoso.com", "--owner", "Mail team", "--reason", "copier", "--expires", expires, "--id",
                 "copier", "-o", "json"]) == 0
    added = json.loads(capsys.readouterr().out)
    assert added["id"] == "copier" and added["createdBy"] == "os-user"  # --by defaults to the OS user
    assert added["scope"] == {"mailboxes": ["scanner@contoso.com", "fax@contoso.com"]}
    assert added["expiresAt"] == f"{expires}T00:00:00Z"

    assert main(["exceptions", "list", tenant_id]) == 0
    out = capsys.readouterr().out
    assert "copier" in out and "mailboxes: scanner@contoso.com, fax@contoso.com" in out and "Mail team" in out
    assert main(["exceptions", "list", name, "-o", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(row["id"], row["control"], row["status"], row["legacy"]) for row in rows] == [
        ("copier", SMTP, "active", "false")]

    later = (datetime.now(timezone.utc) + timedelta(days=60)).date().isoformat()
    assert main(["exceptions", "extend", name, "copier", "--expires", later, "--by", "bob"]) == 0
    assert f"until {later}T00:00:00Z" in capsys.readouterr().out

    # On a terminal, remove asks first; "n" keeps it (exit 1: not done).
    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("builtins.input", lambda question: "n")
    assert main(["exceptions", "remove", name, "copier", "--by", "carol"]) == 1
    assert "Not removed" in capsys.readouterr().err
    assert main(["exceptions", "remove", name, "copier", "--by", "carol", "--yes"]) == 0
    assert "Removed exception copier" in capsys.readouterr().out
    assert main(["exceptions", "list", name, "-o", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["exceptions"] == []

    changes = [e for e in run(history(storage_connection_string, tenant_id)) if e["type"] == "exception.changed"]
    assert [(e["details"]["action"], e["details"]["by"]) for e in changes] == [
        ("removed", "carol"), ("extended", "bob"), ("added", "os-user")]


def test_the_cli_refuses_bad_input_with_exit_2_naming_the_field(cli_tenant, storage_connection_string, capsys):
    tenant_id, name = cli_tenant
    before = registry_row(storage_connection_string, tenant_id)
    soon = (datetime.now(timezone.utc) + timedelta(days=10)).date().isoformat()
    base = ["exceptions", "add", name, "--owner", "o", "--reason", "r", "--by", "me"]
    for argv, phrase in ((base + ["--control", SMTP, "--expires", "2099-01-01"], "expiresAt"),
                         (base + ["--control", SMTP, "--expires", "next week"], "expiresAt"),
                         (base + ["--control", "nope", "--expires", soon], "control"),
                         (base + ["--control", SMTP, "--expires", soon, "--id", "a b"], "id"),
                         (["exceptions", "extend", name, "missing", "--expires", soon, "--by", "me"], "missing"),
                         (["exceptions", "list", f"nobody-{uuid.uuid4().hex[:6]}.example"], "TENANT"),
                         (["exceptions", "list", str(uuid.uuid4())], "tenants add")):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert phrase in err and "Traceback" not in err, (argv, err)
    with pytest.raises(SystemExit) as usage:  # argparse: --expires is required
        main(base + ["--control", SMTP])
    assert usage.value.code == 2 and "--expires" in capsys.readouterr().err
    assert registry_row(storage_connection_string, tenant_id) == before
