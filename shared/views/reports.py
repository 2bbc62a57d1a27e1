"""Reports: the fleet (or one tenant) from storage, as JSON, CSV or one self-contained HTML file.

The data is what the HTTP API answers (shared/views/api.py: list_tenants, then tenant_detail per tenant), reshaped once
into a report document (`build_report`); the three formats are views of that document.

JSON (`to_json`) — the document itself, schema `authwatch.report/1` (REPORT_SCHEMA below is its JSON Schema):

    {"schema": "authwatch.report/1", "generatedAt": "2026-11-23T09:00:00Z",
     "scope": {"kind": "fleet" | "tenant", "tenantId": null | "<guid>"},
     "controls": [{"id", "label", "title", "severity"}],                          # the catalogue, in order
     "summary": {"tenants": 8, "openAlerts": 12, "tenantStatus": {"failing": 5, …},
                 "controlStatus": {"pass": 40, "fail": 14, …}},
     "tenants": [{                                                                  # open alerts first
        "tenantId", "displayName", "status" (healthy | failing | pending | unknown | unreachable |
        never evaluated | disabled), "enabled", "lastCollectedAt", "lastError",
        "enforcementWindow": null | {"windowStartedAt", "windowClosesAt", "windowHours", "open", "secondsLeft",
                                     "confirmed", "gapReported"},
        "controls": [{"control", "title", "status" (pass | fail | pending | unknown | not_applicable), "severity",
                      "summary", "remediation", "frameworks", "evaluatedAt" (null: no stored result)}],
        "openAlerts": [{"id", "at", "type", "control", "severity", "summary", "acknowledged", "snoozed"}],
        "drift": [{"at", "type", "control", "summary", "changedBy", "changedAt",
                   "changes": [{"field", "before", "after", "effect", "note"}]}]}]}

Every tenant lists every catalogue control: one without a stored result (a tenant never read) says `unknown`
with `evaluatedAt` null and a summary saying why.

CSV (`to_csv`) — one row per tenant × control, header first, columns CSV_COLUMNS:

    tenant_id, tenant_name, tenant_status, control, control_title, status, severity, summary, remediation,
    evaluated_at, open_alerts (open alerts of this tenant about this control), last_collected_at

HTML (`to_html`) — one file, inline CSS, no script, no external resource: opens offline and prints (A4 landscape,
colours kept, one tenant per page).
"""

from __future__ import annotations

import csv
import html
import io
import json
from datetime import datetime
from typing import Any

from shared.model import format_time
from shared.views import api

SCHEMA = "authwatch.report/1"
FORMATS = ("html", "csv", "json")
CSV_COLUMNS = ("tenant_id", "tenant_name", "tenant_status", "control", "control_title", "status", "severity",
               "summary", "remediation", "evaluated_at", "open_alerts", "last_collected_at")
CONTROL_STATUSES = ("pass", "fail", "pending", "unknown", "not_applicable")
TENANT_STATUSES = ("healthy", "failing", "pending", "unknown", "unreachable", "never evaluated", "disabled")
DRIFT_TYPES = ("drift.weakened", "drift.strengthened", "basic_auth.reenabled")

_STR, _NULL_STR = {"type": "string"}, {"type": ["string", "null"]}
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
                                   "frameworks": {"type": "array", "items": _STR}, "evaluatedAt": _NULL_STR}}},
                "openAlerts": {"type": "array", "items": {
                    "type": "object",
                    "required": ["id", "at", "type", "control", "severity", "summary", "acknowledged", "snoozed"],
                    "properties": {"id": _STR, "at": _STR, "type": _STR, "control": _NULL_STR, "severity": _STR,
                                   "summary": _STR, "acknowledged": {"type": "boolean"},
                                   "snoozed": {"type": "boolean"}}}},
                "drift": {"type": "array", "items": {
                    "type": "object", "required": ["at", "type", "summary", "changedBy", "changedAt", "changes"],
                    "properties": {"changes": {"type": "array", "items": {
                        "type": "object", "required": ["field", "before", "after", "effect"]}}}}},
            }}},
    },
}


class ReportError(ValueError):
    """A report document that does not follow REPORT_SCHEMA; the message names the path."""


def catalogue() -> list[dict[str, Any]]:
    from shared.views.web import catalogue as web_catalogue

    return web_catalogue()


# --- building the document ----------------------------------------------------------------------------------------

async def build_report(fleet: Any, *, now: datetime, tenant_id: str | None = None) -> dict[str, Any]:
    """The report document for the whole fleet, or for one tenant (LookupError when it is not registered)."""
    if tenant_id is not None:
        details = [await api.tenant_detail(fleet, api.tenant_id_from(tenant_id), now=now, history_limit=200)]
    else:
        details = [await api.tenant_detail(fleet, summary["tenantId"], now=now, history_limit=200)
                   for summary in await api.list_tenants(fleet)]
    return assemble(details, now=now, single=tenant_id is not None)


def assemble(details: list[dict[str, Any]], *, now: datetime, single: bool = False) -> dict[str, Any]:
    """The report document from tenant_detail answers (in the API's order). Pure."""
    controls = catalogue()
    tenants = [_tenant(detail, controls) for detail in details]
    tenants.sort(key=lambda t: 0 if t["openAlerts"] else 1)  # stable: the API's attention-first order within
    return {
        "schema": SCHEMA,
        "generatedAt": format_time(now),
        "scope": {"kind": "tenant" if single else "fleet",
                  "tenantId": tenants[0]["tenantId"] if single and tenants else None},
        "controls": controls,
        "summary": _summary(tenants),
        "tenants": tenants,
    }


def _tenant(detail: dict[str, Any], controls: list[dict[str, Any]]) -> dict[str, Any]:
    results = {item["control"]: item for item in detail.get("controls") or []}
    if detail.get("status") == "unreachable":
        why = detail.get("lastError") or next((a.get("summary") for a in detail.get("openAlerts") or []
                                               if a.get("type") == "tenant.unreachable"), None)
        missing = f"Not evaluated: authwatch cannot read this tenant ({why or 'see its last error'})."
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
        "enforcementWindow": detail.get("enforcementWindow"),
        "controls": rows, "openAlerts": alerts, "drift": drift,
    }


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


def to_csv(report: dict[str, Any]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for tenant in report["tenants"]:
        per_control: dict[str | None, int] = {}
        for alert in tenant["openAlerts"]:
            per_control[alert["control"]] = per_control.get(alert["control"], 0) + 1
        for row in tenant["controls"]:
            writer.writerow([tenant["tenantId"], tenant["displayName"], tenant["status"], row["control"],
                             row["title"], row["status"], row["severity"], row["summary"], row["remediation"],
                             row["evaluatedAt"] or "", per_control.get(row["control"], 0),
                             tenant["lastCollectedAt"] or ""])
    return out.getvalue()


_WORD = {"pass": "PASS", "fail": "FAIL", "pending": "PENDING", "unknown": "UNKNOWN", "not_applicable": "N/A"}

_CSS = """
:root { --pass:#1f883d; --fail:#cf222e; --pending:#e3b341; --unknown:#8250df; --na:#d8dee4; --line:#d1d9e0;
  --muted:#59636e; font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; color:#1f2328; }
body { margin: 24px; font-size: 13px; line-height: 1.4; }
h1 { font-size: 22px; margin: 0 0 2px; } h2 { font-size: 17px; margin: 28px 0 6px; border-bottom: 2px solid #1f2328; }
h3 { font-size: 14px; margin: 14px 0 6px; }
.muted, .when { color: var(--muted); } .mono, pre, code { font-family: ui-monospace, Menlo, Consolas, monospace; }
.totals { display: flex; flex-wrap: wrap; gap: 10px; margin: 12px 0; }
.total { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; min-width: 100px; }
.total b { display: block; font-size: 20px; }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid var(--line); padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-size: 11px; }
td.s { text-align: center; font-weight: 700; font-size: 11px; white-space: nowrap; }
.s-pass { background: var(--pass); color: #fff; } .s-fail { background: var(--fail); color: #fff; }
.s-pending { background: var(--pending); color: #3b2300; } .s-unknown { background: var(--unknown); color: #fff; }
.s-not_applicable { background: var(--na); color: #424a53; }
.badge { display: inline-block; border-radius: 10px; padding: 0 8px; font-size: 11px; font-weight: 700; }
.t-healthy { background: var(--pass); color: #fff; } .t-failing, .t-unreachable { background: var(--fail); color: #fff; }
.t-pending { background: var(--pending); color: #3b2300; } .t-unknown { background: var(--unknown); color: #fff; }
.t-disabled, .t-never-evaluated { background: var(--na); color: #424a53; }
.error { border: 1px solid #ff8182; background: #ffebe9; padding: 6px 10px; border-radius: 6px; }
.window { border-left: 6px solid var(--pending); background: #fff8e5; padding: 6px 10px; margin: 8px 0; }
.change .before { background: #eefbf1; border: 1px solid #aceebb; padding: 0 5px; border-radius: 4px; }
.change .after { background: #ffebe9; border: 1px solid #ff8182; padding: 0 5px; border-radius: 4px; }
pre { background: #f6f8fa; border: 1px solid var(--line); padding: 6px 8px; white-space: pre-wrap;
  overflow-wrap: anywhere; margin: 4px 0; font-size: 11.5px; }
ul { margin: 4px 0; padding-left: 18px; }
.legend span { display: inline-block; padding: 0 8px; margin-right: 6px; border-radius: 4px; font-weight: 700; }
footer { margin-top: 30px; color: var(--muted); font-size: 11px; }
@page { size: A4 landscape; margin: 12mm; }
@media print {
  body { margin: 0; font-size: 10.5px; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  section.tenant { break-before: page; }
  tr, .window, pre, li { break-inside: avoid; }
  thead { display: table-header-group; }
  a { color: inherit; text-decoration: none; }
}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]" if value else "[]"
    return str(value)


def _window(window: dict[str, Any] | None) -> str:
    if not window:
        return ""
    if window.get("open"):
        left = int(window.get("secondsLeft") or 0)
        state = (f"<b>open</b>: {left // 3600}h {left % 3600 // 60:02d}m left at report time; legacy sign-ins are "
                 "tolerated until it closes")
    else:
        state = "<b>closed</b>: " + ("enforcement gap reported" if window.get("gapReported")
                                     else "enforcement confirmed" if window.get("confirmed") else "closed")
    return (f'<div class="window">Enforcement window ({_e(window.get("windowHours"))} hours) {state}. '
            f'Started {_e(window.get("windowStartedAt"))}, closes {_e(window.get("windowClosesAt"))}.</div>')


def _tenant_html(tenant: dict[str, Any]) -> str:
    parts = [f'<section class="tenant" id="t-{_e(tenant["tenantId"])}" data-tenant-id="{_e(tenant["tenantId"])}">',
             f'<h2>{_e(tenant["displayName"])} <span class="badge t-{_e(tenant["status"]).replace(" ", "-")}">'
             f'{_e(tenant["status"])}</span></h2>',
             f'<div class="muted">Tenant <span class="mono">{_e(tenant["tenantId"])}</span> · last evaluated '
             f'{_e(tenant["lastCollectedAt"] or "never")} · {len(tenant["openAlerts"])} open alert(s)</div>']
    if tenant["lastError"]:
        parts.append(f'<p class="error">{_e(tenant["lastError"])}</p>')
    parts.append(_window(tenant["enforcementWindow"]))
    if tenant["openAlerts"]:
        parts.append("<h3>Open alerts</h3><ul>")
        parts += [f'<li><code>{_e(a["type"])}</code> <b>{_e(a["severity"])}</b> <span class="when">{_e(a["at"])}'
                  f'</span>{" · acknowledged" if a["acknowledged"] else ""}{" · snoozed" if a["snoozed"] else ""}'
                  f'<br>{_e(a["summary"])}</li>' for a in tenant["openAlerts"]]
        parts.append("</ul>")
    if tenant["drift"]:
        parts.append("<h3>Drift</h3><ul>")
        for d in tenant["drift"]:
            who = _e(d["changedBy"]) if d["changedBy"] else "someone (the audit log does not say who)"
            changes = "".join(f'<div class="change">{_e(c["field"])}: <span class="before">{_e(_show(c["before"]))}'
                              f'</span> → <span class="after">{_e(_show(c["after"]))}</span> '
                              f'<span class="when">{_e(c["effect"])}{" · " + _e(c["note"]) if c["note"] else ""}'
                              f'</span></div>' for c in d["changes"])
            parts.append(f'<li><code>{_e(d["type"])}</code> changed by <b>{who}</b> at '
                         f'{_e(d["changedAt"] or d["at"])}<br>{_e(d["summary"])}{changes}</li>')
        parts.append("</ul>")
    parts.append('<h3>Controls</h3><table><thead><tr><th>Status</th><th>Control</th><th>What authwatch found</th>'
                 '<th>How to fix it</th></tr></thead><tbody>')
    for row in tenant["controls"]:
        fix = f'<pre>{_e(row["remediation"])}</pre>' if row["remediation"] and row["status"] in ("fail", "pending") \
            else ""
        parts.append(f'<tr data-control="{_e(row["control"])}"><td class="s s-{_e(row["status"])}">'
                     f'{_WORD.get(row["status"], _e(row["status"]))}</td><td><b>{_e(row["title"])}</b><br>'
                     f'<span class="when mono">{_e(row["control"])} · {_e(row["severity"])}</span></td>'
                     f'<td>{_e(row["summary"])}</td><td>{fix}</td></tr>')
    parts.append("</tbody></table></section>")
    return "\n".join(parts)


def to_html(report: dict[str, Any]) -> str:
    controls = report["controls"]
    tenants = report["tenants"]
    summary = report["summary"]
    scope = report["scope"]
    title = ("authwatch report — " + tenants[0]["displayName"]) if scope["kind"] == "tenant" and tenants \
        else "authwatch report — fleet"
    head = "".join(f'<th title="{_e(c["title"])}">{_e(c["label"])}</th>' for c in controls)
    matrix = []
    for tenant in tenants:
        cells = "".join(f'<td class="s s-{_e(row["status"])}" title="{_e(row["summary"])}">'
                        f'{_WORD.get(row["status"], _e(row["status"]))}</td>' for row in tenant["controls"])
        matrix.append(f'<tr data-tenant-id="{_e(tenant["tenantId"])}"><td><a href="#t-{_e(tenant["tenantId"])}">'
                      f'{_e(tenant["displayName"])}</a></td><td><span class="badge '
                      f't-{_e(tenant["status"]).replace(" ", "-")}">{_e(tenant["status"])}</span></td>'
                      f'<td>{len(tenant["openAlerts"])}</td>{cells}</tr>')
    totals = "".join(f'<div class="total"><b>{n}</b>{_e(label)}</div>' for n, label in (
        (summary["tenants"], "tenants"), (summary["openAlerts"], "open alerts"),
        (summary["tenantStatus"].get("failing", 0), "failing"),
        (summary["tenantStatus"].get("pending", 0), "in an enforcement window"),
        (summary["tenantStatus"].get("unreachable", 0), "unreachable"),
        (summary["tenantStatus"].get("healthy", 0), "healthy")))
    legend = "".join(f'<span class="s-{s}">{_WORD[s]}</span>' for s in CONTROL_STATUSES)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body>
<header><h1>{_e(title)}</h1>
<div class="muted">Generated {_e(report["generatedAt"])} from Table storage · schema {_e(report["schema"])} ·
legacy authentication (POP, IMAP, SMTP AUTH, ActiveSync, other clients, SharePoint legacy protocols)</div></header>
<div class="totals">{totals}</div>
<div class="legend">Legend: {legend}</div>
<h2>Tenants × controls</h2>
<table class="matrix"><thead><tr><th>Tenant</th><th>Status</th><th>Open alerts</th>{head}</tr></thead>
<tbody>
{chr(10).join(matrix) or '<tr><td colspan="3">No tenant is registered.</td></tr>'}
</tbody></table>
{chr(10).join(_tenant_html(tenant) for tenant in tenants)}
<footer>authwatch · {len(tenants)} tenant(s) · controls: {_e(", ".join(c["id"] for c in controls))}</footer>
</body></html>
"""


def render(report: dict[str, Any], fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return {"html": to_html, "csv": to_csv, "json": to_json}[fmt](report)


async def write_report(fleet: Any, path: str, *, fmt: str = "html", now: datetime,
                       tenant_id: str | None = None) -> dict[str, Any]:
    """Build and write a report file (what `authwatch demo` can call to leave an HTML report behind)."""
    report = await build_report(fleet, now=now, tenant_id=tenant_id)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(render(report, fmt))
    return report
