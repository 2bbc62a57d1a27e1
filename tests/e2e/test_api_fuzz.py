"""Bad input to the HTTP API (property-based, hypothesis), through the real function entry points: every route
answers arbitrary ids (OData-injection attempts, path tricks, unicode, overlong), arbitrary JSON, wrong types, unknown
fields, garbage bytes and oversized bodies with a clear JSON 4xx — never a 500, never a traceback — and writes
nothing: no registry or state row appears for a fuzzed id, and a registered tenant's row is left untouched.

Storage is the session's Azurite, shared with other tests, so every "nothing written" check is scoped to ids this
module generated (and compares with what was stored before)."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import urllib.parse
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableServiceClient
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from functions.http_api import MAX_BODY_BYTES
from shared.model import format_time, parse_time_or_none
from shared.storage.tenant_store import TABLE as STATE_TABLE
from shared.storage.tenant_store import TenantStore
from shared.tenants.registry import PARTITION as REGISTRY_PARTITION
from shared.tenants.registry import TABLE as REGISTRY_TABLE
from tests.conftest import EXTERNAL_STORAGE_ENV

ROOT = Path(__file__).parents[2]
DELIVERIES_TABLE = "AuthwatchDeliveries"
CLIENT_ID = "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50"
CREDENTIAL = {"mode": "secret", "clientId": CLIENT_ID, "secretSetting": "AUTHWATCH_SECRET_FUZZ"}
FUZZ = settings(max_examples=50, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# Every JSON route of functions/http_api.py: function name → (method, route template). A test below checks this
# table against the app, so a new route cannot slip past the fuzzing.
ROUTES: dict[str, tuple[str, str]] = {
    "list_tenants": ("GET", "tenants"),
    "onboard_tenant": ("POST", "tenants"),
    "get_tenant": ("GET", "tenants/{tenantId}"),
    "update_tenant": ("PATCH", "tenants/{tenantId}"),
    "disable_tenant": ("POST", "tenants/{tenantId}/disable"),
    "enable_tenant": ("POST", "tenants/{tenantId}/enable"),
    "remove_tenant": ("DELETE", "tenants/{tenantId}"),
    "import_tenants": ("POST", "tenants/import"),
    "tenant_results": ("GET", "tenants/{tenantId}/results"),
    "tenant_history": ("GET", "tenants/{tenantId}/history"),
    "tenant_failed_deliveries": ("GET", "tenants/{tenantId}/deliveries/failed"),
    "accept_baseline": ("POST", "tenants/{tenantId}/baseline/accept"),
    "evaluate_now": ("POST", "tenants/{tenantId}/evaluate"),
    "acknowledge_alert": ("POST", "tenants/{tenantId}/alerts/{alertId}/ack"),
    "snooze_alert": ("POST", "tenants/{tenantId}/alerts/{alertId}/snooze"),
    "report": ("GET", "report"),  # a file on success (tested below), JSON errors like every route
    "readiness_smtp_basic": ("GET", "readiness/smtp-basic"),
    "tenant_timeline": ("GET", "tenants/{tenantId}/timeline"),
    "list_exceptions": ("GET", "tenants/{tenantId}/exceptions"),
    "add_exception": ("POST", "tenants/{tenantId}/exceptions"),
    "extend_exception": ("POST", "tenants/{tenantId}/exceptions/{exceptionId}/extend"),
    "remove_exception": ("DELETE", "tenants/{tenantId}/exceptions/{exceptionId}"),
    "onboarding_overview": ("GET", "onboarding"),
}
TENANT_ROUTES = sorted(name for name, (_, path) in ROUTES.items() if "{tenantId}" in path)
BODY_ROUTES = ("onboard_tenant", "update_tenant", "acknowledge_alert", "snooze_alert", "add_exception",
               "extend_exception", "remove_exception", "remove_tenant", "import_tenants")  # those that read a body
PUBLIC_HTTP_FUNCTIONS: frozenset[str] = frozenset()  # no anonymous health route exists; add one here deliberately

# --- fixtures ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def connection(request: pytest.FixtureRequest) -> str:
    external = os.environ.get(EXTERNAL_STORAGE_ENV)
    if external:
        return external
    azurite = request.getfixturevalue("azurite")  # the session's Azurite
    azurite.start()  # no-op when running; heals a test that left it stopped
    return azurite.connection_string


@pytest.fixture(scope="module")
def app(connection: str) -> Iterator[dict[str, Any]]:
    """The function app as the host indexes it, with authwatch pointed at the test storage.

    function_app.py is loaded as a fresh module: get_functions() may run only once per FunctionApp, and
    tests/e2e/test_function_app.py indexes the imported `function_app.app` itself."""
    spec = importlib.util.spec_from_file_location("function_app_under_fuzz", ROOT / "function_app.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AUTHWATCH_STORAGE_CONNECTION_STRING", connection)
        yield {function.get_function_name(): function for function in module.app.get_functions()}


@pytest.fixture(scope="module")
def registered(app: dict[str, Any]) -> str:
    """One tenant onboarded through the API, never evaluated: the target of body fuzzing on existing tenants."""
    tenant_id = str(uuid.uuid4())
    status, body, _ = call(app, "onboard_tenant", body=json.dumps(
        {"tenantId": tenant_id, "displayName": "Fuzz target", "credential": CREDENTIAL}).encode())
    assert status == 201, body
    return tenant_id


@pytest.fixture(scope="module")
def with_event(app: dict[str, Any], connection: str) -> tuple[str, str]:
    """(tenant id, event id): a registered tenant with one stored event, so alert actions reach the event row."""
    tenant_id = str(uuid.uuid4())
    status, body, _ = call(app, "onboard_tenant", body=json.dumps(
        {"tenantId": tenant_id, "displayName": "Fuzz events", "credential": CREDENTIAL}).encode())
    assert status == 201, body
    event_id = uuid.uuid4().hex
    event = {"id": event_id, "at": "2026-11-23T08:00:00Z", "tenantId": tenant_id, "type": "control.failed",
             "control": "exo_smtp_auth_disabled", "severity": "high", "summary": "SMTP AUTH is on", "details": {}}

    async def seed() -> None:
        async with TenantStore.from_connection_string(connection) as store:
            await store.create()
            await store.commit(tenant_id, state={"tenantId": tenant_id}, expected_etag=None, results=[],
                               evaluated_at=datetime.now(timezone.utc), events=[event])

    asyncio.run(seed())
    return tenant_id, event_id


# --- calling the functions and reading storage ---------------------------------------------------------------------


def call(app: dict[str, Any], name: str, *, tenant_id: str | None = None, alert_id: str | None = None,
         body: bytes = b"", params: dict[str, str] | None = None) -> tuple[int, Any, str]:
    """Invoke one HTTP function with a real azure.functions.HttpRequest; (status, parsed JSON, raw text)."""
    method, template = ROUTES[name]
    route = {key: value for key, value in (("tenantId", tenant_id), ("alertId", alert_id)) if value is not None}
    if "{exceptionId}" in template and alert_id is not None:
        route["exceptionId"] = alert_id  # the fuzzed second id plays the exception's
    path = template
    for key, value in route.items():
        path = path.replace("{" + key + "}", urllib.parse.quote(value, safe=""))
    request = func.HttpRequest(method=method, url=f"http://localhost/api/{path}", body=body, route_params=route,
                               params=params or {}, headers={"content-type": "application/json"})
    response = asyncio.run(app[name].get_user_function()(request))
    raw = response.get_body().decode("utf-8")
    assert response.mimetype == "application/json", (name, response.mimetype, raw[:200])
    return response.status_code, json.loads(raw), raw


def assert_clear_4xx(status: int, body: Any, raw: str, *, expect: tuple[int, ...] = (400, 404)) -> str:
    """A JSON 4xx whose body is exactly {"error": <non-empty text>}, no stack trace; returns the error."""
    assert status in expect, (status, raw[:500])
    assert isinstance(body, dict) and set(body) == {"error"}, raw[:500]
    error = body["error"]
    assert isinstance(error, str) and error.strip(), raw[:500]
    assert "Traceback" not in raw and 'File "' not in raw
    return error


def stored_keys(connection: str) -> set[str]:
    """Every tenant key in the registry (RowKey) and in the state and delivery tables (PartitionKey)."""
    keys: set[str] = set()
    with TableServiceClient.from_connection_string(connection) as service:
        for table, column in ((REGISTRY_TABLE, "RowKey"), (STATE_TABLE, "PartitionKey"),
                              (DELIVERIES_TABLE, "PartitionKey")):
            try:
                keys.update(entity[column] for entity in service.get_table_client(table).list_entities(
                    select=["PartitionKey", "RowKey"]))
            except ResourceNotFoundError:
                pass  # a table nobody has created yet holds nothing
    return keys


def key_forms(raw: str) -> set[str]:
    """Every form under which a fuzzed id could have been stored (as sent, lower-cased, normalised GUID)."""
    forms = {raw, raw.lower(), raw.strip().lower()}
    try:
        forms.add(str(uuid.UUID(raw)))
    except (ValueError, TypeError):
        pass
    return forms


class Written:
    """Collects the ids a test generated; `check()` asserts none of them gained a row since this was created."""

    def __init__(self, connection: str) -> None:
        self.connection = connection
        self.before = stored_keys(connection)
        self.ids: set[str] = set()

    def add(self, raw: str) -> None:
        self.ids |= key_forms(raw)

    def check(self) -> None:
        new = stored_keys(self.connection) - self.before
        assert not new & self.ids, f"rows written for fuzzed ids: {sorted(new & self.ids)[:5]}"


def registry_row(connection: str, tenant_id: str) -> dict[str, Any]:
    with TableServiceClient.from_connection_string(connection) as service:
        entity = service.get_table_client(REGISTRY_TABLE).get_entity(REGISTRY_PARTITION, tenant_id)
        return {"etag": entity.metadata["etag"], **dict(entity)}


def partition_rows(connection: str, tenant_id: str) -> list[str]:
    """The tenant's stored rows, apart from the registry's change marker (written when the tenant is registered)."""
    from shared.storage.tenant_store import REGISTRY_ROW

    with TableServiceClient.from_connection_string(connection) as service:
        try:
            return [entity["RowKey"] for entity in service.get_table_client(STATE_TABLE).query_entities(
                "PartitionKey eq @tenant", parameters={"tenant": tenant_id}, select=["RowKey"])
                if entity["RowKey"] != REGISTRY_ROW]
        except ResourceNotFoundError:
            return []


# --- strategies ----------------------------------------------------------------------------------------------------

INJECTIONS = [
    "x' or PartitionKey ne '", "' or 1 eq 1 or '", "%27", "%27%20or%20PartitionKey%20ne%20%27", "'", "''",
    "../", "..%2F..%2Fregistry", "../../AuthwatchRegistry()", "tenants/../admin", "/", "\\", "#", "?", "a?b=c",
    "PartitionKey eq 'tenant'", "8c1d0f4e-1a2b-4c3d-8e9f-000000000001' or RowKey ne '",
    "8c1d0f4e-1a2b-4c3d-8e9f-000000000001%27", "8c1d0f4e-1a2b-4c3d-8e9f-000000000001/../x",
    "8c1d0f4e-1a2b-4c3d-8e9f-000000000001\n", "8c1d0f4e-1a2b-4c3d-8e9f-00000000000g", "$filter=true", "\x00",
    "", " ", "\u202e8c1d0f4e", "８c1d0f4e-1a2b-4c3d-8e9f-000000000001", "٨c1d0f4e-1a2b-4c3d-8e9f-000000000001",
    "8c1d0f4e_1a2b_4c3d_8e9f_000000000001", "0x8c1d0f4e1a2b4c3d8e9f000000000001", "null", "undefined",
    "a" * 5000, "8c1d0f4e-1a2b-4c3d-8e9f-000000000001" * 40, "𝔱𝔢𝔫𝔞𝔫𝔱", "🙂" * 300,
    # What int(..., 16) tolerates inside uuid.UUID: each of these used to be read as some *other* tenant's GUID.
    "8c1d0f4e1a2b4c3d8e9f0000000000_1", " 8c1d0f4e1a2b4c3d8e9f00000000001", "+c1d0f4e1a2b4c3d8e9f000000000001",
    "8c1d0f4e-1a2b-4c3d-8e9f-00000000000\t",
]
fuzzed_ids = st.one_of(
    st.sampled_from(INJECTIONS),
    st.text(max_size=80),
    st.text(min_size=1000, max_size=3000, alphabet=st.characters(codec="utf-8")),
    st.uuids().map(str),  # well-formed but never registered: 404
    st.uuids().map(lambda u: "{" + str(u).upper() + "}"),  # other spellings uuid.UUID accepts: still 404
    st.uuids().map(lambda u: f"urn:uuid:{u.hex}"),
    st.builds(lambda u, tail: str(u) + tail, st.uuids(), st.sampled_from(["'", "' or ''='", "/x", "%27", " ", "x"])),
)
alert_ids = st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=40),
                      st.text(alphabet="0123456789abcdefABCDEF", min_size=30, max_size=34))
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                    st.text(max_size=20))
json_values = st.recursive(scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                           st.dictionaries(st.text(max_size=10), kids, max_size=4)),
                           max_leaves=20)
bodies = st.one_of(st.just(b""), json_values.map(lambda v: json.dumps(v).encode()), st.binary(max_size=300))
limit_params = st.one_of(st.text(max_size=12), st.sampled_from(
    ["0", "501", "-1", "1e2", " 5", "5 ", "+5", "5.0", "²", "¹²", "٣", "৫", "０", "1" * 5000, "0x10", ""]))


def onboarding_body(tenant_id: str, **changes: Any) -> dict[str, Any]:
    return {"tenantId": tenant_id, "displayName": "Fuzzed", "credential": dict(CREDENTIAL), **changes}


# One field of a valid configuration made wrong (field named in the error): used for onboarding and PATCH bodies.
WRONG_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "displayName": st.one_of(json_values.filter(lambda v: not isinstance(v, str)),
                             st.text(alphabet=" \t", max_size=3), st.text(min_size=257, max_size=300),
                             st.sampled_from(["line\nbreak", "nul\x00", "bell\x07"])),
    "enabled": json_values.filter(lambda v: not isinstance(v, bool)),
    "scheduleMinutes": st.one_of(st.integers().filter(lambda n: not 5 <= n <= 1440), st.booleans(),
                                 st.floats(min_value=5, max_value=1440), st.text(max_size=4),
                                 st.sampled_from([10**400 // 10**380, [15], {"m": 15}])),
    "credential": st.one_of(json_values.filter(lambda v: not isinstance(v, dict)),
                            st.sampled_from([{}, {**CREDENTIAL, "mode": "password"},
                                             {**CREDENTIAL, "clientId": "x' or 1 eq 1 or '"},
                                             {**CREDENTIAL, "secretSetting": "s3cr3t value!"},
                                             {**CREDENTIAL, "clientSecret": "leaked"}])),
    "approvedExclusions": st.one_of(json_values.filter(lambda v: not isinstance(v, (dict, type(None)))),
                                    st.sampled_from([{"people": []}, {"users": "u1"}, {"users": [1]},
                                                     {"users": [""]}, {"users": ["x" * 300]}])),
    "routing": json_values.filter(lambda v: v is not None and not isinstance(v, dict)),
    "tags": st.one_of(json_values.filter(lambda v: not isinstance(v, (list, type(None)))),
                      st.lists(st.just("t"), min_size=51, max_size=60), st.sampled_from([[1], [""], ["x" * 65]])),
    "lastSuccessAt": st.just("2026-11-23T08:00:00Z"),  # written by authwatch itself, never by a request
    "consecutiveFailures": st.integers(0, 5),
    "createdAt": st.just("2026-11-23T08:00:00Z"),
    # Exceptions change one at a time (their own routes, each in the history), never with the whole configuration.
    "exceptions": json_values,
    "maxExceptionDays": st.one_of(st.integers().filter(lambda n: not 1 <= n <= 3650), st.booleans(),
                                  st.floats(min_value=1, max_value=3650), st.text(max_size=4),
                                  st.sampled_from([[30], {"d": 30}])),
    "exceptionReminderDays": st.one_of(st.integers().filter(lambda n: not 0 <= n <= 90), st.booleans(),
                                       st.floats(min_value=0, max_value=90), st.text(max_size=4)),
}
unknown_fields = st.text(min_size=1, max_size=20).filter(
    lambda k: k not in {"tenantId", "displayName", "credential", "enabled", "scheduleMinutes", "approvedExclusions",
                        "routing", "tags", "lastSuccessAt", "lastAttemptAt", "consecutiveFailures", "lastError",
                        "createdAt", "updatedAt", "exceptions", "maxExceptionDays", "exceptionReminderDays"})


@st.composite
def wrong_configs(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """(changes, the field the error must name): one wrong field, or one unknown field, on top of valid ones."""
    if draw(st.booleans()):
        field = draw(st.sampled_from(sorted(WRONG_FIELDS)))
        return {field: draw(WRONG_FIELDS[field])}, field
    field = draw(unknown_fields)
    return {"displayName": "Still valid", field: draw(json_values)}, field


# --- the app's HTTP surface ----------------------------------------------------------------------------------------


def http_triggers(app: dict[str, Any]) -> dict[str, dict[str, Any]]:
    triggers = {}
    for name, function in app.items():
        for binding in function.get_bindings():
            data = binding.get_dict_repr()
            if data["type"] == "httpTrigger":
                triggers[name] = data
    return triggers


def test_every_http_function_requires_a_function_key(app: dict[str, Any]) -> None:
    triggers = http_triggers(app)
    assert set(ROUTES) <= set(triggers)  # the fuzzed routes are HTTP functions of this app
    for name, trigger in triggers.items():
        level = str(getattr(trigger["authLevel"], "value", trigger["authLevel"])).lower()
        if name in PUBLIC_HTTP_FUNCTIONS:
            continue
        assert level in {"function", "admin"}, f"{name} is reachable without a key (authLevel {level})"


def test_the_fuzzed_routes_are_every_json_route_of_the_app(app: dict[str, Any]) -> None:
    declared = {name: ([m.value if hasattr(m, "value") else m for m in t["methods"]][0], t["route"])
                for name, t in http_triggers(app).items() if name != "dashboard"}  # the HTML page takes no input
    assert declared == ROUTES


# --- arbitrary ids on every route ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", TENANT_ROUTES)
def test_injection_ids_are_refused_as_not_a_guid(app: dict[str, Any], connection: str, name: str) -> None:
    written = Written(connection)
    for raw in INJECTIONS:
        written.add(raw)
        status, body, text = call(app, name, tenant_id=raw, alert_id="a" * 32)
        error = assert_clear_4xx(status, body, text, expect=(400,))
        assert "tenantId" in error and "GUID" in error, error
    written.check()


@FUZZ
@given(name=st.sampled_from(TENANT_ROUTES), tenant_id=fuzzed_ids, alert_id=alert_ids, body=bodies,
       params=st.dictionaries(st.sampled_from(["history", "limit", "tenantId", "$filter", "x"]), limit_params,
                              max_size=2))
@example(name="get_tenant", tenant_id="x' or PartitionKey ne '", alert_id="", body=b"", params={})
@example(name="update_tenant", tenant_id=str(uuid.UUID(int=0xF022)), alert_id="", body=b"{}", params={})
def test_fuzzed_ids_bodies_and_params_get_a_clear_4xx_and_write_nothing(
        app: dict[str, Any], connection: str, name: str, tenant_id: str, alert_id: str, body: bytes,
        params: dict[str, str]) -> None:
    written = Written(connection)
    written.add(tenant_id)
    status, answer, text = call(app, name, tenant_id=tenant_id, alert_id=alert_id, body=body, params=params)
    error = assert_clear_4xx(status, answer, text)
    try:
        uuid.UUID(tenant_id)
    except ValueError:
        # Every handler decodes the tenant id first: a non-GUID is named as such whatever else is wrong.
        assert status == 400 and "tenantId" in error, error
    else:
        if status == 404:
            assert "no tenant" in error or "no results" in error, error
    written.check()


@FUZZ
@given(params=st.dictionaries(st.sampled_from(["format", "status", "control", "severity", "failingOnly", "tenant",
                                               "x"]),
                              st.one_of(st.text(max_size=20), st.sampled_from(
                                  ["html", "csv", "json", "ocsf", "pdf", "fail", "fail,unknown", "high", "true",
                                   "exo_smtp_auth_disabled", "x' or PartitionKey ne '", str(uuid.UUID(int=7))])),
                              max_size=4))
def test_the_report_route_answers_a_file_or_a_clear_4xx(app: dict[str, Any], params: dict[str, str]) -> None:
    request = func.HttpRequest(method="GET", url="http://localhost/api/report", body=b"", params=params)
    response = asyncio.run(app["report"].get_user_function()(request))
    raw = response.get_body().decode("utf-8")
    if response.status_code == 200:
        assert response.mimetype in ("text/html", "text/csv", "application/json") and raw
        assert "Content-Disposition" in response.headers
    else:
        assert_clear_4xx(response.status_code, json.loads(raw), raw)


# --- bodies: onboarding, updating, alert actions -------------------------------------------------------------------


@FUZZ
@given(document=json_values)
@example(document=[])
@example(document={"tenantId": "x' or PartitionKey ne '", "displayName": "x", "credential": CREDENTIAL})
def test_onboarding_arbitrary_json_is_refused(app: dict[str, Any], connection: str, document: Any) -> None:
    written = Written(connection)
    if isinstance(document, dict) and isinstance(document.get("tenantId"), str):
        written.add(document["tenantId"])
    status, answer, text = call(app, "onboard_tenant", body=json.dumps(document).encode())
    assert_clear_4xx(status, answer, text, expect=(400,))
    written.check()


import_items = st.one_of(json_values, st.fixed_dictionaries(
    {"tenantId": st.one_of(st.sampled_from(INJECTIONS), st.text(max_size=40))},
    optional={"name": json_values, "credentialMode": json_values, "scheduleMinutes": json_values,
              "tags": json_values, "enabled": json_values, "clientId": json_values}))


@FUZZ
@given(document=st.one_of(json_values, st.lists(import_items, max_size=5).map(lambda items: {"tenants": items})))
@example(document={"tenants": [{"tenantId": "x' or PartitionKey ne '", "name": "x"}]})
@example(document={"tenants": {"tenants": 5}})
def test_importing_arbitrary_json_rejects_every_row_or_the_body_and_writes_nothing(
        app: dict[str, Any], connection: str, document: Any) -> None:
    written = Written(connection)
    for item in (document.get("tenants") if isinstance(document, dict) else None) or []:
        if isinstance(item, dict) and isinstance(item.get("tenantId"), str):
            written.add(item["tenantId"])
    status, answer, text = call(app, "import_tenants", body=json.dumps(document).encode())
    if status == 200:  # a list of rows: each one rejected, with why
        assert {row["outcome"] for row in answer["rows"]} <= {"rejected"}, text[:500]
        assert all(row["reason"] for row in answer["rows"])
        assert answer["summary"]["rejected"] == len(answer["rows"])
    else:
        assert_clear_4xx(status, answer, text, expect=(400,))
    written.check()


@FUZZ
@given(case=wrong_configs(), tenant_id=st.uuids().map(str))
def test_onboarding_with_one_wrong_or_unknown_field_names_it_and_writes_nothing(
        app: dict[str, Any], connection: str, case: tuple[dict[str, Any], str], tenant_id: str) -> None:
    changes, field = case
    written = Written(connection)
    written.add(tenant_id)
    status, answer, text = call(app, "onboard_tenant", body=json.dumps(onboarding_body(tenant_id, **changes)).encode())
    error = assert_clear_4xx(status, answer, text, expect=(400,))
    assert field in error, (field, error)
    written.check()


@FUZZ
@given(case=wrong_configs())
@example(case=({"tenantId": "x' or PartitionKey ne '"}, "tenantId"))
@example(case=({"tenantId": str(uuid.UUID(int=0xF023))}, "tenantId"))  # another tenant's id: an id cannot change
def test_updating_with_one_wrong_or_unknown_field_names_it_and_changes_nothing(
        app: dict[str, Any], connection: str, registered: str, case: tuple[dict[str, Any], str]) -> None:
    changes, field = case
    before = registry_row(connection, registered)
    status, answer, text = call(app, "update_tenant", tenant_id=registered, body=json.dumps(changes).encode())
    error = assert_clear_4xx(status, answer, text, expect=(400,))
    assert field in error, (field, error)
    assert registry_row(connection, registered) == before  # same ETag: not even rewritten with the same values


@pytest.mark.parametrize("value", [[], 0, False, ""])
def test_a_falsy_wrong_type_for_exclusions_is_refused(app: dict[str, Any], connection: str, registered: str,
                                                      value: Any) -> None:
    before = registry_row(connection, registered)
    status, answer, text = call(app, "update_tenant", tenant_id=registered,
                                body=json.dumps({"approvedExclusions": value}).encode())
    assert status == 400 and "approvedExclusions" in answer["error"], text
    assert registry_row(connection, registered) == before


exception_bodies = st.one_of(bodies, st.fixed_dictionaries(
    {"control": st.sampled_from(["exo_smtp_auth_disabled", "x' or RowKey ne '", ""]),
     "owner": st.text(max_size=5), "reason": st.text(max_size=5), "createdBy": st.text(max_size=5),
     "expiresAt": st.one_of(json_values, st.sampled_from(["9999-12-31T23:59:59-05:00", "2000-01-01", "2099-01-01",
                                                          "yesterday"])),  # never now … now + 180 days
     "scope": st.one_of(json_values, st.dictionaries(st.sampled_from(["users", "people", "mailboxes"]),
                                                      st.lists(st.text(max_size=5), max_size=3), max_size=2))},
    optional={"id": json_values, "by": json_values}).map(lambda v: json.dumps(v).encode()))


@FUZZ
@given(name=st.sampled_from(["add_exception", "extend_exception", "remove_exception"]), exception_id=alert_ids,
       body=exception_bodies)
@example(name="add_exception", exception_id="", body=json.dumps(
    {"control": "exo_smtp_auth_disabled", "owner": "o", "reason": "r", "createdBy": "c",
     "expiresAt": "9999-12-31T23:59:59-05:00"}).encode())
@example(name="extend_exception", exception_id="x' or RowKey ne '", body=b'{"expiresAt": "2099-01-01", "by": "x"}')
@example(name="remove_exception", exception_id="legacy-approvedExclusions", body=b'{"by": "x"}')
def test_exception_changes_that_cannot_apply_are_refused_and_write_nothing(
        app: dict[str, Any], connection: str, registered: str, name: str, exception_id: str, body: bytes) -> None:
    before = registry_row(connection, registered)
    status, answer, text = call(app, name, tenant_id=registered, alert_id=exception_id, body=body)
    assert_clear_4xx(status, answer, text)  # the tenant has no exception to extend or remove; no body is valid
    assert registry_row(connection, registered) == before
    assert partition_rows(connection, registered) == []  # no history row for a change that did not happen


@FUZZ
@given(name=st.sampled_from(["acknowledge_alert", "snooze_alert"]), alert_id=alert_ids, body=bodies)
@example(name="snooze_alert", alert_id="a" * 32, body=b'{"until": "9999-12-31T23:59:59-05:00"}')
@example(name="snooze_alert", alert_id="a" * 32, body=b'{"until": "2000-01-01T00:00:00Z"}')
@example(name="acknowledge_alert", alert_id="a" * 32, body=json.dumps({"by": "x" * 201}).encode())
@example(name="acknowledge_alert", alert_id="x' or EventId ne '", body=b"{}")
def test_alert_actions_on_a_tenant_without_events_refuse_and_write_nothing(
        app: dict[str, Any], connection: str, registered: str, name: str, alert_id: str, body: bytes) -> None:
    before = registry_row(connection, registered)
    status, answer, text = call(app, name, tenant_id=registered, alert_id=alert_id, body=body)
    assert_clear_4xx(status, answer, text)
    assert partition_rows(connection, registered) == []  # no event row conjured up by an annotation
    assert registry_row(connection, registered) == before


def event_row(connection: str, tenant_id: str) -> dict[str, Any]:
    with TableServiceClient.from_connection_string(connection) as service:
        rows = list(service.get_table_client(STATE_TABLE).query_entities(
            "PartitionKey eq @tenant and RowKey gt @start and RowKey lt @end",
            parameters={"tenant": tenant_id, "start": "e:", "end": "e;"}))
    assert len(rows) == 1
    return {"etag": rows[0].metadata["etag"], **dict(rows[0])}


until_values = st.one_of(
    json_values,
    st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()),
    st.sampled_from(["9999-12-31T23:59:59-05:00", "9999-12-31T23:59:59+00:00", "0001-01-01T00:00:00+05:00",
                     "2099-01-01T00:00:00Z", "2099-01-01T00:00:00", "2099-01-01", "yesterday", "",
                     "2099-02-30T00:00Z"]),
)


@FUZZ
@given(until=until_values)
@example(until="9999-12-31T23:59:59-05:00")  # future, but past datetime's range once turned into UTC
@example(until="9999-12-31T23:59:59+00:00")
def test_snoozing_a_real_event_accepts_only_a_future_time(app: dict[str, Any], connection: str,
                                                          with_event: tuple[str, str], until: Any) -> None:
    tenant_id, event_id = with_event
    before = event_row(connection, tenant_id)
    status, answer, text = call(app, "snooze_alert", tenant_id=tenant_id, alert_id=event_id,
                                body=json.dumps({"until": until, "note": "unknown fields are ignored here"}).encode())
    moment = parse_time_or_none(until)
    try:
        moment = moment.astimezone(timezone.utc) if moment else None
    except OverflowError:
        moment = None  # a time whose UTC is past year 9999 cannot be stored: refused like a non-time
    now = datetime.now(timezone.utc)
    if moment is not None and moment > now + timedelta(minutes=1):
        assert status == 200, text
        assert answer["id"] == event_id and answer["snoozedUntil"] == format_time(moment)
    elif moment is None or moment <= now:
        error = assert_clear_4xx(status, answer, text, expect=(400,))
        assert "until" in error, error
        assert event_row(connection, tenant_id) == before  # a refused snooze leaves the event row alone
    else:
        assert status in (200, 400), text  # within a minute of now: the verdict depends on the call's own clock


@FUZZ
@given(by=json_values)
@example(by="x" * 201)
@example(by="oncall@msp.example")
def test_acknowledging_a_real_event_checks_who(app: dict[str, Any], connection: str, with_event: tuple[str, str],
                                               by: Any) -> None:
    tenant_id, event_id = with_event
    before = event_row(connection, tenant_id)
    status, answer, text = call(app, "acknowledge_alert", tenant_id=tenant_id, alert_id=event_id,
                                body=json.dumps({"by": by}).encode())
    if by is None or (isinstance(by, str) and len(by) <= 200):
        assert status == 200 and answer["acknowledgedBy"] == (by or None), text
    else:
        error = assert_clear_4xx(status, answer, text, expect=(400,))
        assert "by" in error, error
        assert event_row(connection, tenant_id) == before


@FUZZ
@given(name=st.sampled_from(["get_tenant", "tenant_history", "tenant_failed_deliveries"]), value=limit_params)
@example(name="tenant_history", value="²")  # str.isdigit() says yes, int() says no
@example(name="get_tenant", value="٣")
def test_limit_parameters_accept_only_1_to_500(app: dict[str, Any], registered: str, name: str, value: str) -> None:
    param = "history" if name == "get_tenant" else "limit"
    status, answer, text = call(app, name, tenant_id=registered, params={param: value})
    if re.fullmatch(r"[0-9]{1,3}", value) and 1 <= int(value) <= 500:
        assert status == 200, text[:300]
    else:
        error = assert_clear_4xx(status, answer, text, expect=(400,))
        assert param in error, error


def test_listing_ignores_a_garbage_body_and_query(app: dict[str, Any]) -> None:
    status, answer, _ = call(app, "list_tenants", body=b"\xff" * 100, params={"$filter": "PartitionKey ne ''"})
    assert status == 200 and isinstance(answer["tenants"], list)


# --- bodies the parser must not choke on ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", BODY_ROUTES)
@pytest.mark.parametrize(("raw", "phrase"), [
    (b"[" * 30_000 + b"]" * 30_000, "JSON"),  # deeper than json's recursion limit, still under the size limit
    (b'{"displayName": ' + b"9" * 5000 + b"}", "JSON"),  # more digits than int() converts
    (b'{"displayName": "\xc3\x28"}', "JSON"),  # not UTF-8
    (b'{"displayName": "half a pair \\ud800"}', "surrogate"),  # a lone surrogate escape is not text
    (b"{not json", "JSON"),
])
def test_bodies_beyond_the_parsers_limits_are_refused(app: dict[str, Any], connection: str, registered: str,
                                                      name: str, raw: bytes, phrase: str) -> None:
    before = registry_row(connection, registered)
    route_id = None if name == "onboard_tenant" else registered
    status, answer, text = call(app, name, tenant_id=route_id, alert_id="a" * 32, body=raw)
    error = assert_clear_4xx(status, answer, text, expect=(400,))
    assert phrase in error, error
    assert registry_row(connection, registered) == before


@pytest.mark.parametrize("name", BODY_ROUTES)
@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(extra=st.integers(1, 20_000), shape=st.sampled_from(["padded", "big-field", "garbage"]))
def test_oversized_bodies_are_refused_before_parsing(app: dict[str, Any], connection: str, registered: str,
                                                     name: str, extra: int, shape: str) -> None:
    tenant_id = str(uuid.uuid4())
    written = Written(connection)
    written.add(tenant_id)
    # A body that would be accepted if it were small: refused only because of its size.
    valid = {"onboard_tenant": onboarding_body(tenant_id), "update_tenant": {"displayName": "Renamed"},
             "acknowledge_alert": {"by": "oncall"}, "snooze_alert": {"until": "2099-01-01T00:00:00Z"},
             "add_exception": {"control": "exo_smtp_auth_disabled", "owner": "Mail team", "reason": "scanner",
                               "createdBy": "oncall", "expiresAt": format_time(datetime.now(timezone.utc)
                                                                               + timedelta(days=30))},
             "extend_exception": {"expiresAt": "2099-01-01", "by": "oncall"},
             "remove_exception": {"by": "oncall"}, "remove_tenant": {"purge": False},
             "import_tenants": {"tenants": [{"tenantId": tenant_id, "name": "Fuzzed", "credentialMode": "secret",
                                             "clientId": CLIENT_ID, "secretSetting": "AUTHWATCH_SECRET_FUZZ"}]}}[name]
    text = json.dumps(valid)
    size = MAX_BODY_BYTES + extra
    if shape == "padded":
        raw = (text[:-1] + " " * (size - len(text)) + "}").encode()
    elif shape == "big-field":
        raw = json.dumps({**valid, "tags": ["t" * 60] * (size // 60)}).encode()
    else:
        raw = os.urandom(size)
    assert len(raw) > MAX_BODY_BYTES
    before = registry_row(connection, registered)
    status, answer, body = call(app, name, tenant_id=None if name == "onboard_tenant" else registered,
                                alert_id="a" * 32, body=raw)
    error = assert_clear_4xx(status, answer, body, expect=(400,))
    assert "limit" in error and str(MAX_BODY_BYTES) in error, error
    assert registry_row(connection, registered) == before
    written.check()


def test_a_body_at_the_limit_is_still_read(app: dict[str, Any], connection: str) -> None:
    # The boundary: exactly MAX_BODY_BYTES is accepted, so the refusals above are about size and nothing else.
    tenant_id = str(uuid.uuid4())
    text = json.dumps(onboarding_body(tenant_id))
    raw = (text[:-1] + " " * (MAX_BODY_BYTES - len(text)) + "}").encode()
    assert len(raw) == MAX_BODY_BYTES
    status, answer, _ = call(app, "onboard_tenant", body=raw)
    assert status == 201 and answer["tenantId"] == tenant_id
    assert tenant_id in stored_keys(connection)  # the write check above can see a row when there is one
