"""Onboarding at a glance over real Azurite (issue 20, item 4): what `authwatch tenants discover/onboard` saved
(OnboardingRecords) is what GET /api/onboarding, `authwatch serve` and the report show, those needing a fix first.

The session's Azurite is shared with other tests, so every check is scoped to the customers this module saved, and
they are removed afterwards (a report elsewhere must not gain an Onboarding section from them)."""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import io
import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest

from shared.bootstrap import build_fleet
from shared.storage.account import account
from shared.tenants.onboarding_records import OnboardingRecord, OnboardingRecords
from shared.views.onboarding_view import onboarding_overview

pytestmark = pytest.mark.integration

ROOT = Path(__file__).parents[2]
NOW = datetime(2026, 12, 6, 9, 0, tzinfo=timezone.utc)
FIX = "Make sure the account you sign in with is in your AdminAgents group; then run the onboarding again."


async def _records(connection: str, action: Any) -> None:
    records = OnboardingRecords(account(connection).table_service())
    try:
        await action(records)
    finally:
        await records.close()


@pytest.fixture
def saved(storage_connection_string: str) -> Iterator[dict[str, OnboardingRecord]]:
    """Three customers as onboarding leaves them: one ready, one whose relationship lacks a role, one failed."""
    ids = [str(uuid.uuid4()) for _ in range(3)]
    by_state = {
        "ready": OnboardingRecord(ids[0], "Alpine Ski House", "ready", steps={"consent": "created"}, updated_at=NOW),
        "lacks_role": OnboardingRecord(ids[1], "Adatum", "lacks_role", "Ask Adatum to add Privileged Role "
                                       "Administrator to the GDAP relationship.", "the relationship lacks it",
                                       updated_at=NOW),
        "failed": OnboardingRecord(ids[2], "Coho Winery", "failed", FIX, "consent failed: 403 Forbidden",
                                   {"consent": "failed"}, NOW),
    }

    async def save(records: OnboardingRecords) -> None:
        for record in by_state.values():
            await records.save(record)

    async def forget(records: OnboardingRecords) -> None:
        for record in by_state.values():
            await records.forget(record.tenant_id)

    env = {"AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string}

    async def create_tables() -> None:
        fleet = build_fleet(env)
        try:
            await fleet.create()
        finally:
            await fleet.close()

    asyncio.run(create_tables())
    asyncio.run(_records(storage_connection_string, save))
    try:
        yield by_state
    finally:
        asyncio.run(_records(storage_connection_string, forget))


def mine(rows: list[dict[str, Any]], saved: dict[str, OnboardingRecord]) -> list[dict[str, Any]]:
    ids = {record.tenant_id for record in saved.values()}
    return [row for row in rows if row["tenantId"] in ids]


def test_the_overview_shows_what_onboarding_saved_worst_first(storage_connection_string, saved):
    async def read() -> dict[str, Any]:
        fleet = build_fleet({"AUTHWATCH_STORAGE_CONNECTION_STRING": storage_connection_string})
        try:
            return await onboarding_overview(fleet)
        finally:
            await fleet.close()

    overview = asyncio.run(read())
    rows = mine(overview["customers"], saved)
    assert [(row["name"], row["state"], row["label"]) for row in rows] == [
        ("Coho Winery", "failed", "Failed"), ("Adatum", "lacks_role", "Relationship lacks a role"),
        ("Alpine Ski House", "ready", "Ready")]
    assert rows[0]["fix"] == FIX and rows[0]["detail"] == "consent failed: 403 Forbidden"
    assert rows[0]["steps"] == {"consent": "failed"} and rows[0]["updatedAt"] == "2026-12-06T09:00:00Z"
    assert rows[2]["fix"] == "" and rows[2]["needsFix"] is False
    everyone = overview["customers"]  # other tests' customers may be there too: the counts add up over all of them
    assert sum(overview["counts"].values()) == len(everyone) and overview["counts"]["failed"] >= 1
    assert overview["needsFix"] == sum(1 for row in everyone if row["state"] != "ready")


# --- through the function app: the route, and the report route in each format -------------------------------------

@pytest.fixture
def functions(storage_connection_string: str, monkeypatch) -> dict[str, Any]:
    """The function app as the host indexes it (a fresh module: get_functions() runs once per FunctionApp)."""
    spec = importlib.util.spec_from_file_location("function_app_onboarding", ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("AUTHWATCH_STORAGE_CONNECTION_STRING", storage_connection_string)
    return {function.get_function_name(): function for function in module.app.get_functions()}


def call(function: Any, url: str, params: dict[str, str] | None = None) -> func.HttpResponse:
    request = func.HttpRequest(method="GET", url=f"http://localhost/api/{url}", body=b"", params=params or {})
    return asyncio.run(function.get_user_function()(request))


def test_get_onboarding_answers_the_overview(functions, saved):
    response = call(functions["onboarding_overview"], "onboarding")
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = json.loads(response.get_body())
    assert set(body) >= {"customers", "counts", "needsFix"}
    rows = mine(body["customers"], saved)
    assert [row["state"] for row in rows] == ["failed", "lacks_role", "ready"]
    assert "Privileged Role Administrator" in rows[1]["fix"]


def test_the_report_route_has_the_onboarding_section_in_each_format(functions, saved):
    report = functions["report"]
    document = json.loads(call(report, "report", {"format": "json"}).get_body())
    rows = mine(document["onboarding"]["customers"], saved)
    assert [(row["name"], row["state"], row["fix"]) for row in rows] == [
        ("Coho Winery", "failed", FIX), ("Adatum", "lacks_role", saved["lacks_role"].fix),
        ("Alpine Ski House", "ready", "")]

    text = call(report, "report", {"format": "csv"}).get_body().decode()
    onboarding = list(csv.DictReader(io.StringIO(text.split("\n\n")[-1])))
    assert [(row["tenant_name"], row["state_label"], row["fix"]) for row in mine(
        [{**row, "tenantId": row["tenant_id"]} for row in onboarding], saved)] == [
        ("Coho Winery", "Failed", FIX), ("Adatum", "Relationship lacks a role", saved["lacks_role"].fix),
        ("Alpine Ski House", "Ready", "")]

    page = call(report, "report", {"format": "html"}).get_body().decode()
    section = page[page.index('<section class="onboarding">'):]
    assert "Onboarding (GDAP)" in section and FIX in section
    assert section.index(saved["failed"].tenant_id) < section.index(saved["ready"].tenant_id)
