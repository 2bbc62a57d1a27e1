"""Reports: the fleet (or one tenant) from storage, as JSON, CSV or one self-contained HTML file.

The data is what the HTTP API answers (shared/views/api.py: list_tenants, then tenant_detail per tenant), reshaped once
into a report document (`build_report`); the three formats are views of that document.

JSON (`to_json`) — the document itself, schema `authwatch.report/1` (REPORT_SCHEMA below is its JSON Schema):

    {"schema": "authwatch.report/1", "generatedAt": "2026-11-23T09:00:00Z",
     "scope": {"kind": "fleet" | "tenant", "tenantId": null | "<guid>"},
     "controls": [{"id", "label", "title", "severity"}],                          # the catalogue, in order
     "summary": {"tenants": 8, "openAlerts": 12, "tenantStatus": {"failing": 5, …},
                 "controlStatus": {"pass": 40, "fail": 14, …}},
     "filters": {"failingOnly", "status", "control", "severity"},  # what was asked; null: not filtered
     "tenants": [{                                                 # the dashboard's order (see `order_tenants`)
        "tenantId", "displayName", "status" (healthy | failing | pending | unknown | unreachable |
        never evaluated | disabled), "enabled", "lastCollectedAt", "lastError",
        "unreachable": null | {"reason", "fix"},   # said once per tenant, not once per control
        "hiddenControls": how many catalogue controls the filters (or --failing-only) left out,
        "enforcementWindow": null | {"windowStartedAt", "windowClosesAt", "windowHours", "open", "secondsLeft",
                                     "confirmed", "gapReported"},
        "controls": [{"control", "title", "status" (pass | fail | pending | unknown | not_applicable), "severity",
                      "summary", "remediation", "frameworks", "evaluatedAt" (null: no stored result)}],
        "openAlerts": [{"id", "at", "type", "control", "severity", "summary", "acknowledged", "snoozed"}],
        "drift": [{"at", "type", "control", "summary", "changedBy", "changedAt",
                   "changes": [{"field", "before", "after", "effect", "note"}]}],
        "exceptions": [{"id", "control", "scope", "owner", "reason", "createdBy", "createdAt", "expiresAt", "status"
                        (active | expiring soon | expired | legacy), "daysLeft", "legacy"}]}],
     "readiness": {"kind": "smtp-basic", "switchOff", "knows", "fixOptions", "summary",   # shared/views/readiness.py
                   "tenants": [{"tenantId", "verdict", "headline", "breaking", "senders": [{"user", "mailbox",
                                "clientIps", "lastSeen", "count", "outcome", "why", "fix", …}], …}]}}

`exceptions` (issue 21) are the tenant's accepted deviations (shared/tenants/exceptions_service.py), its legacy
approvedExclusions last; a control row a live exception turns into a pass names it in `exception` (its ids, or null).

`onboarding` (issue 20; present only when an MSP customer has an onboarding record) is every GDAP customer's
onboarding state and its one fix, as the dashboard's Onboarding page shows them: shared/views/report_onboarding.py
describes it in each format (in the CSV, a second table after a blank line).

`readiness` (added with issue 18) is SMTP AUTH Basic readiness for the end-of-December-2026 switch-off, the same
answer as GET /api/readiness/smtp-basic, tenants that will break first; it ignores the control filters.

Every tenant lists every catalogue control the filters keep: one without a stored result (a tenant never read)
says `unknown` with `evaluatedAt` null and a summary saying why (for an unreachable tenant, "unreachable" says why
and how to fix it, once). `--failing-only` keeps the controls that are not passing (fail, pending, unknown);
`summary` always counts the whole scope, before filters.

OCSF (`ocsf`) — a JSON array of OCSF 1.8.0 Compliance Findings (class_uid 2003), one per tenant × control row
shown: shared/views/ocsf.py maps each field.

CSV (`to_csv`) — one row per tenant × control, header first, columns CSV_COLUMNS:

    tenant_id, tenant_name, tenant_status, control, control_title, status, severity, summary, remediation,
    evaluated_at, open_alerts (open alerts of this tenant about this control), last_collected_at,
    exception (the ids of the exceptions that make this control pass, space-separated; empty: none)

Tenant data is text, never a formula: a cell starting with = + - @, tab, CR or LF gets a leading single quote
(`csv_cell`); open_alerts, the one numeric column, is written as a number.

HTML (`to_html`) — one file, inline CSS, no script, no external resource: opens offline and prints (A4 landscape,
colours kept, one tenant per page).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from typing import Any

from shared.model import format_time
from shared.views import api, readiness
from shared.views.onboarding_view import onboarding_overview
from shared.views.report_html import to_html
from shared.views.report_onboarding import ONBOARDING_SCHEMA, csv_table
from shared.views.report_onboarding import section as onboarding_section
from shared.views.timeline import timeline_rows

SCHEMA = "authwatch.report/1"
FORMATS = ("html", "csv", "json", "ocsf")
TIMELINE_ROWS = 20  # per tenant in a report: the newest; `authwatch timeline` shows more
ATTENTION = ("fail", "pending", "unknown")  # what --failing-only keeps
CSV_COLUMNS = ("tenant_id", "tenant_name", "tenant_status", "control", "control_title", "status", "severity",
               "summary", "remediation", "evaluated_at", "open_alerts", "last_collected_at", "exception")
CONTROL_STATUSES = ("pass", "fail", "pending", "unknown", "not_applicable")
TENANT_STATUSES = ("healthy", "failing", "pending", "unknown", "unreachable", "never evaluated", "disabled")
DRIFT_TYPES = ("drift.weakened", "drift.strengthened", "basic_auth.reenabled")
EXCEPTION_FIELDS = ("id", "control", "scope", "owner", "reason", "createdBy", "createdAt", "expiresAt", "status",
                    "daysLeft", "legacy")

_STR, _NULL_STR = {"type": "string"}, {"type": ["string", "null"]}
_SENDER_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["user", "mailbox", "clientIps", "lastSeen", "count", "outcome", "why", "fix"],
    "properties": {"outcome": {"enum": list(readiness.OUTCOMES)}, "count": {"type": "integer"},
                   "lastSeen": _NULL_STR, "clientIps": {"type": "array", "items": _STR}}}
_READINESS_SCHEMA: dict[str, Any] = {  # shared/views/readiness.py
    "type": "object", "required": ["kind", "switchOff", "knows", "fixOptions", "summary", "tenants"],
    "properties": {
        "kind": {"enum": [readiness.KIND]}, "switchOff": _STR, "knows": _STR,
        "fixOptions": {"type": "array", "items": {"type": "object", "required": ["id", "name", "when", "url"]}},
        "tenants": {"type": "array", "items": {
            "type": "object", "required": ["tenantId", "displayName", "verdict", "headline", "breaking", "senders"],
            "properties": {"verdict": {"enum": list(readiness.VERDICTS)}, "breaking": {"type": "integer"},
                           "senders": {"type": "array", "items": _SENDER_SCHEMA}}}}}}
REPORT_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "authwatch report",
    "type": "object",
    "required": ["schema", "generatedAt", "scope", "controls", "summary", "tenants"],
    "properties": {
        "schema": {"enum": [SCHEMA]},
        "generatedAt": _STR,
        "scope": {"type": "object", "required": ["kind", "tenantId"],
                  "properties": {"kind": {"enum": ["fleet", "tenant"]}, "tenantId": _NULL_STR}},
        "controls": {"type": "array", "items": {
            "type": "object", "required": ["id", "label", "title", "severity"],
            "properties": {"id": _STR, "label": _STR, "title": _STR, "severity": _STR}}},
        "summary": {"type": "object", "required": ["tenants", "openAlerts", "tenantStatus", "controlStatus"],
                    "properties": {"tenants": {"type": "integer"}, "openAlerts": {"type": "integer"},
                                   "tenantStatus": {"type": "object"}, "controlStatus": {"type": "object"}}},
        "tenants": {"type": "array", "items": {
            "type": "object",
            "required": ["tenantId", "displayName", "status", "enabled", "lastCollectedAt", "lastError",
                         "enforcementWindow", "controls", "openAlerts", "drift"],
            "properties": {
                "tenantId": _STR, "displayName": _STR, "status": {"enum": list(TENANT_STATUSES)},
                "enabled": {"type": "boolean"}, "lastCollectedAt": _NULL_STR, "lastError": _NULL_STR,
                "enforcementWindow": {"type": ["object", "null"]},
                "controls": {"type": "array", "items": {
                    "type": "object",
                    "required": ["control", "title", "status", "severity", "summary", "remediation", "frameworks",
                                 "evaluatedAt"],
                    "properties": {"control": _STR, "title": _STR, "status": {"enum": list(CONTROL_STATUSES)},
                                   "severity": _STR, "summary": _STR, "remediation": _STR,
                                   "frameworks": {"type": "array", "items": _STR}, "evaluatedAt": _NULL_STR,
                                   "exception": {"type": ["array", "null"], "items": _STR}}}},
                "openAlerts": {"type": "array", "items": {
                    "type": "object",
                    "required": ["id", "at", "type", "control", "severity", "summary", "acknowledged", "snoozed"],
                    "properties": {"id": _STR, "at": _STR, "type": _STR, "control": _NULL_STR, "severity": _STR,
                                   "summary": _STR, "acknowledged": {"type": "boolean"},
                                   "snoozed": {"type": "boolean"}}}},
                "timeline": {"type": "array", "items": {
                    "type": "object", "required": ["when", "kind", "what", "by", "change", "inForce", "notes"]}},
                "drift": {"type": "array", "items": {
                    "type": "object", "required": ["at", "type", "summary", "changedBy", "changedAt", "changes"],
                    "properties": {"changes": {"type": "array", "items": {
                        "type": "object", "required": ["field", "before", "after", "effect"]}}}}},
                "exceptions": {"type": "array", "items": {
                    "type": "object", "required": ["id", "control", "scope", "owner", "reason", "expiresAt", "status",
                                                   "daysLeft", "legacy"],
                    "properties": {"id": _STR, "control": _STR, "scope": {"type": "object"}, "owner": _NULL_STR,
                                   "reason": _STR, "expiresAt": _NULL_STR, "legacy": {"type": "boolean"}}}},
            }}},
        "readiness": _READINESS_SCHEMA,
        "onboarding": ONBOARDING_SCHEMA,
    },
}


class ReportError(ValueError):
    """A report document that does not follow REPORT_SCHEMA; the message names the path."""


def catalogue() -> list[dict[str, Any]]:
    from shared.views.web import catalogue as web_catalogue

    return web_catalogue()


# --- building the document ----------------------------------------------------------------------------------------

async def build_report(fleet: Any, *, now: datetime, tenant_id: str | None = None, failing_only: bool = False,
                       filters: dict[str, list[str] | None] | None = None) -> dict[str, Any]:
    """The report document for the whole fleet, or for one tenant (LookupError when it is not registered).
    `filters` maps status / control / severity to the values to keep (None: all)."""
    if tenant_id is not None:
        details = [await api.tenant_detail(fleet, api.tenant_id_from(tenant_id), now=now, history_limit=200)]
    else:
        details = [await api.tenant_detail(fleet, summary["tenantId"], now=now, history_limit=200)
                   for summary in await api.list_tenants(fleet)]
    details = await readiness.with_signins(fleet, details)  # the state's sign-ins, for the readiness section
    onboarding = onboarding_section(await onboarding_overview(fleet),
                                    tenant_id=api.tenant_id_from(tenant_id) if tenant_id is not None else None)
    return assemble(details, now=now, single=tenant_id is not None, failing_only=failing_only, filters=filters,
                    onboarding=onboarding)


def order_tenants(tenants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The dashboard's default order: most open alerts first, then the API's attention-first order
    (api.list_tenants: unreachable, failing, pending, unknown, never evaluated, healthy, disabled; then by name),
    which `tenants` is already in: this sort is stable, so it adds only the dashboard's first key."""
    return sorted(tenants, key=lambda t: -len(t["openAlerts"]))


def assemble(details: list[dict[str, Any]], *, now: datetime, single: bool = False, failing_only: bool = False,
             filters: dict[str, list[str] | None] | None = None,
             onboarding: dict[str, Any] | None = None) -> dict[str, Any]:
    """The report document from tenant_detail answers (in the API's order) and the Onboarding section
    (report_onboarding.section; None: no customer has an onboarding record, and the document has no such key).
    Pure."""
    controls = catalogue()
    tenants = order_tenants([_tenant(detail, controls, now) for detail in details])
    summary = _summary(tenants)  # the whole scope, before filters
    wanted = {key: set(values) for key, values in (filters or {}).items() if values}
    for tenant in tenants:
        kept = [row for row in tenant["controls"]
                if (not failing_only or row["status"] in ATTENTION)
                and all(str(row[key]) in values for key, values in wanted.items())]
        tenant["hiddenControls"] = len(tenant["controls"]) - len(kept)
        tenant["controls"] = kept
    return {
        "schema": SCHEMA,
        "generatedAt": format_time(now),
        "scope": {"kind": "tenant" if single else "fleet",
                  "tenantId": tenants[0]["tenantId"] if single and tenants else None},
        "filters": {"failingOnly": failing_only, **{key: sorted((filters or {}).get(key) or []) or None
                                                    for key in ("status", "control", "severity")}},
        "controls": controls,
        "summary": summary,
        "tenants": tenants,
        "readiness": readiness.from_details(details, now=now),
        **({"onboarding": onboarding} if onboarding else {}),
    }


# What to do about an unreachable tenant, by the AADSTS code in its last error (codes: shared/collect/errors.py).
_FIXES = {
    "AADSTS7000229": "A Global Administrator of the tenant gives admin consent to the authwatch app again.",
    "AADSTS65001": "A Global Administrator of the tenant gives admin consent to the authwatch app again.",
    "AADSTS700016": "Check the app's client id in the tenant's credential and that the app registration exists; "
                    "then have the tenant's admin consent again.",
    "AADSTS7000112": "The tenant's admin enables the authwatch enterprise application (Properties > Enabled).",
    "AADSTS90002": "Check the tenant id: no such tenant exists in this cloud.",
    "AADSTS7000215": "Put the current client secret in the tenant's credential (or switch to federated mode).",
    "AADSTS7000222": "Create a new client secret and update the tenant's credential (or switch to federated mode).",
    "AADSTS70021": "Add the federated credential for the managed identity to the app registration.",
    "AADSTS700027": "Upload the certificate to the app registration, or check the federated credential.",
    "AADSTS700024": "Check the clock of the machine that signs the client assertion.",
}


def unreachable_fix(tenant_id: str, reason: str | None) -> str:
    import re

    code = re.search(r"AADSTS\d+", reason or "")
    first = _FIXES.get(code.group(0)) if code else None
    check = (f"`authwatch tenants add --tenant {tenant_id} --name NAME --check-only` checks the access end to end "
             "and prints the consent link.")
    return f"{first} Then {check[0].lower()}{check[1:]}" if first else f"Find what is missing: {check}"


def _tenant(detail: dict[str, Any], controls: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    results = {item["control"]: item for item in detail.get("controls") or []}
    unreachable = None
    if detail.get("status") == "unreachable":
        why = detail.get("lastError") or next((a.get("summary") for a in detail.get("openAlerts") or []
                                               if a.get("type") == "tenant.unreachable"), None)
        why = why.removeprefix("unreachable: ") if why else None  # the status already says so
        unreachable = {"reason": why or "authwatch cannot sign in to this tenant (no error was recorded)",
                       "fix": unreachable_fix(detail["tenantId"], why)}
        missing = "Not evaluated: the tenant is unreachable (its reason and fix are given once, for the tenant)."
    else:
        missing = "Not evaluated yet: no stored result for this control."
    rows = []
    for control in controls:
        item = results.get(control["id"])
        rows.append({
            "control": control["id"], "title": control["title"],
            "status": item["status"] if item else "unknown",
            "severity": item["severity"] if item else control["severity"],
            "summary": item["summary"] if item else missing,
            "remediation": (item.get("remediation") or "") if item else "",
            "frameworks": list(item.get("frameworks") or []) if item else [],
            "evaluatedAt": item.get("evaluatedAt") if item else None,
            "exception": _covered_by(item),
        })
    alerts = [{"id": a.get("id"), "at": a.get("at"), "type": a.get("type"), "control": a.get("control"),
               "severity": a.get("severity"), "summary": a.get("summary"),
               "acknowledged": bool(a.get("acknowledged")), "snoozed": bool(a.get("snoozed"))}
              for a in detail.get("openAlerts") or []]
    drift = []
    for event in detail.get("history") or []:
        details = event.get("details") or {}
        if event.get("type") in DRIFT_TYPES and isinstance(details.get("changes"), list):
            drift.append({"at": event.get("at"), "type": event.get("type"), "control": event.get("control"),
                          "summary": event.get("summary"), "changedBy": details.get("changedBy"),
                          "changedAt": details.get("changedAt"),
                          "changes": [{"field": c.get("field"), "before": c.get("before"), "after": c.get("after"),
                                       "effect": c.get("effect"), "note": c.get("note") or ""}
                                      for c in details["changes"] if isinstance(c, dict)]})
    return {
        "tenantId": detail["tenantId"], "displayName": detail.get("displayName") or detail["tenantId"],
        "status": detail.get("status"), "enabled": bool(detail.get("enabled", True)),
        "lastCollectedAt": detail.get("lastCollectedAt"), "lastError": detail.get("lastError"),
        "unreachable": unreachable, "hiddenControls": 0,
        "enforcementWindow": detail.get("enforcementWindow"),
        "controls": rows, "openAlerts": alerts, "drift": drift,
        "exceptions": [{key: item.get(key) for key in EXCEPTION_FIELDS} for item in detail.get("exceptions") or []],
        # The tenant's timeline (shared/views/timeline.py), newest first: changes, windows and Microsoft's dates.
        "timeline": timeline_rows(detail.get("history") or [], controls=detail.get("controls") or [], now=now,
                                  limit=TIMELINE_ROWS),
    }


def _covered_by(item: dict[str, Any] | None) -> list[str] | None:
    """The exceptions a passing result names (evidence.exception.ids, shared/controls/exceptions.py), or None."""
    covered = ((item or {}).get("evidence") or {}).get("exception")
    ids = covered.get("ids") if isinstance(covered, dict) else None
    if (item or {}).get("status") != "pass" or not isinstance(ids, list) or not ids:
        return None
    return [str(ident) for ident in ids]


def _summary(tenants: list[dict[str, Any]]) -> dict[str, Any]:
    tenant_status: dict[str, int] = {}
    control_status = {status: 0 for status in CONTROL_STATUSES}
    for tenant in tenants:
        tenant_status[tenant["status"]] = tenant_status.get(tenant["status"], 0) + 1
        for row in tenant["controls"]:
            control_status[row["status"]] = control_status.get(row["status"], 0) + 1
    return {"tenants": len(tenants), "openAlerts": sum(len(t["openAlerts"]) for t in tenants),
            "tenantStatus": tenant_status, "controlStatus": control_status}


# --- checking a document against the schema (tests, and anyone consuming the JSON) -------------------------------

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def validate(document: Any, schema: dict[str, Any] = REPORT_SCHEMA, path: str = "$") -> None:
    """Check `document` against the subset of JSON Schema REPORT_SCHEMA uses (type, enum, required, properties,
    items); ReportError naming the first offending path."""
    if "enum" in schema and document not in schema["enum"]:
        raise ReportError(f"{path}: expected one of {schema['enum']}, got {document!r}")
    kinds = schema.get("type")
    if kinds is not None:
        kinds = kinds if isinstance(kinds, list) else [kinds]
        ok = any(isinstance(document, int) and not isinstance(document, bool) if kind == "integer"
                 else isinstance(document, _TYPES[kind]) and not (kind != "boolean" and isinstance(document, bool))
                 for kind in kinds)
        if not ok:
            raise ReportError(f"{path}: expected {' or '.join(kinds)}, got {type(document).__name__}")
    if isinstance(document, dict):
        for name in schema.get("required", ()):
            if name not in document:
                raise ReportError(f"{path}: missing {name!r}")
        for name, sub in schema.get("properties", {}).items():
            if name in document:
                validate(document[name], sub, f"{path}.{name}")
    if isinstance(document, list) and "items" in schema:
        for index, item in enumerate(document):
            validate(item, schema["items"], f"{path}[{index}]")


# --- formats ------------------------------------------------------------------------------------------------------

def to_json(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2, ensure_ascii=False) + "\n"


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n")  # OWASP "CSV Injection", plus a line feed


def csv_cell(value: Any, *, numeric: bool = False) -> str:
    """One CSV cell that a spreadsheet shows as what it is. A number in a numeric column is written as is (-3 stays a
    number); any other cell starting with = + - @ tab, CR or LF is prefixed with a single quote, so Excel, LibreOffice
    and Google Sheets show the text instead of running it as a formula (OWASP CSV injection). A CR inside a cell
    becomes a line break: Python's csv module would leave a lone CR unquoted and split the row."""
    if value is None:
        return ""
    if numeric and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        text = "'" + text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def to_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for tenant in report["tenants"]:
        per_control: dict[str | None, int] = {}
        for alert in tenant["openAlerts"]:
            per_control[alert["control"]] = per_control.get(alert["control"], 0) + 1
        for row in tenant["controls"]:
            cells = [tenant["tenantId"], tenant["displayName"], tenant["status"], row["control"], row["title"],
                     row["status"], row["severity"], row["summary"], row["remediation"], row["evaluatedAt"]]
            writer.writerow([*map(csv_cell, cells), csv_cell(per_control.get(row["control"], 0), numeric=True),
                             csv_cell(tenant["lastCollectedAt"]), csv_cell(" ".join(row.get("exception") or []))])
    return out.getvalue() + csv_table(report.get("onboarding"), csv_cell)


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return {"html": to_html, "csv": to_csv, "json": to_json, "ocsf": _ocsf}[fmt](report)


def _ocsf(report: dict[str, Any]) -> str:
    from importlib.metadata import PackageNotFoundError, version

    from shared.views import ocsf

    try:
        product_version = version("authwatch")
    except PackageNotFoundError:  # pragma: no cover
        product_version = ""
    return ocsf.to_json(ocsf.from_report(report, product_version=product_version))


async def write_report(fleet: Any, path: str, *, fmt: str = "html", now: datetime,
                       tenant_id: str | None = None) -> dict[str, Any]:
    """Build and write a report file (what `authwatch demo` can call to leave an HTML report behind)."""
    report = await build_report(fleet, now=now, tenant_id=tenant_id)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(render(report, fmt))
    return report
