"""Control results as OCSF "Compliance Finding" events (class_uid 2003), for a SIEM.

Mapped field by field from the Open Cybersecurity Schema Framework, schema version 1.8.0 (github.com/ocsf/ocsf-schema,
release commit 3dcb905d: events/findings/compliance_finding.json extends events/findings/finding.json extends
events/base_event.json; objects/compliance.json, finding_info.json, metadata.json, remediation.json,
resource_details.json; enum values from those files and dictionary.json). One finding per tenant × control result:

    base_event    category_uid 2 "Findings", class_uid 2003 "Compliance Finding", activity_id 1 "Create",
                  type_uid 200301 (class_uid * 100 + activity_id), time (ms since the epoch: evaluatedAt, or the
                  report time when no result is stored), severity_id/severity from the control's severity,
                  message = summary, metadata {version "1.8.0", product, tenant_uid}, unmapped {authwatch: …}
    finding       finding_info {uid "authwatch:<tenant>:<control>", title, desc}, status_id/status (below)
    compliance    control = control id, desc = control title, standards = framework names, requirements = the
                  framework tags ("CIS 6.5.4"), status_id/status (below), status_details [summary]
    context       remediation {desc}, resources [{uid tenant id, name, type "Microsoft 365 tenant"}]

authwatch status → compliance.status_id (1 Pass, 2 Warning = "did not yield a result due to missing information",
3 Fail, 99 Other) and finding status_id (1 New, 3 Suppressed, 4 Resolved):
    pass → 1 Pass / 4 Resolved; fail → 3 Fail / 1 New; unknown → 2 Warning / 1 New;
    pending (a block configured, inside its enforcement window) → 2 Warning / 1 New;
    not_applicable → 99 Other ("Not Applicable") / 3 Suppressed.
severity → severity_id (2 Low, 3 Medium, 4 High; 0 Unknown otherwise).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, Iterable

from shared.controls.frameworks import FRAMEWORKS
from shared.model import format_time, parse_time_or_none

OCSF_VERSION = "1.8.0"
CLASS_UID, CATEGORY_UID, ACTIVITY_ID = 2003, 2, 1
TYPE_UID = CLASS_UID * 100 + ACTIVITY_ID

SEVERITY = {"low": (2, "Low"), "medium": (3, "Medium"), "high": (4, "High")}
COMPLIANCE_STATUS = {"pass": (1, "Pass"), "fail": (3, "Fail"), "unknown": (2, "Warning"), "pending": (2, "Warning"),
                     "not_applicable": (99, "Not Applicable")}
FINDING_STATUS = {"pass": (4, "Resolved"), "fail": (1, "New"), "unknown": (1, "New"), "pending": (1, "New"),
                  "not_applicable": (3, "Suppressed")}
_STANDARD_BY_PREFIX = {prefix: name for name, (prefix, _) in FRAMEWORKS.items()}


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def finding(row: dict[str, Any], *, tenant_id: str, tenant_name: str | None, now: datetime,
            product_version: str = "") -> dict[str, Any]:
    """One Compliance Finding from one control row (report row or ControlResult JSON with its title)."""
    status = str(row.get("status"))
    severity_id, severity = SEVERITY.get(str(row.get("severity")), (0, "Unknown"))
    compliance_id, compliance_caption = COMPLIANCE_STATUS.get(status, (99, "Other"))
    finding_id, finding_caption = FINDING_STATUS.get(status, (99, "Other"))
    at = parse_time_or_none(row.get("evaluatedAt")) if row.get("evaluatedAt") else None
    tags = list(row.get("frameworks") or [])
    standards = list(dict.fromkeys(_STANDARD_BY_PREFIX.get(tag.split(" ", 1)[0], tag.split(" ", 1)[0])
                                   for tag in tags))
    title = row.get("title") or row.get("control")
    event: dict[str, Any] = {
        "activity_id": ACTIVITY_ID, "activity_name": "Create",
        "category_uid": CATEGORY_UID, "category_name": "Findings",
        "class_uid": CLASS_UID, "class_name": "Compliance Finding",
        "type_uid": TYPE_UID, "type_name": "Compliance Finding: Create",
        "time": _millis(at or now), "severity_id": severity_id, "severity": severity,
        "status_id": finding_id, "status": finding_caption,
        "message": row.get("summary") or "",
        "metadata": {"version": OCSF_VERSION, "tenant_uid": tenant_id,
                     "product": {"name": "authwatch", "vendor_name": "authwatch",
                                 **({"version": product_version} if product_version else {})}},
        "finding_info": {"uid": f"authwatch:{tenant_id}:{row.get('control')}", "title": title,
                         "desc": row.get("summary") or ""},
        "compliance": {"control": row.get("control"), "desc": title, "standards": standards,
                       "requirements": tags, "status_id": compliance_id, "status": compliance_caption,
                       "status_details": [row.get("summary") or ""]},
        "resources": [{"uid": tenant_id, "name": tenant_name or tenant_id, "type": "Microsoft 365 tenant"}],
        "unmapped": {"authwatch": {"status": status, "severity": row.get("severity"),
                                   "evaluatedAt": row.get("evaluatedAt") or None, "reportedAt": format_time(now)}},
    }
    if row.get("remediation"):
        event["remediation"] = {"desc": row["remediation"]}
    return event


def from_report(report: dict[str, Any], *, product_version: str = "") -> list[dict[str, Any]]:
    """Every tenant × control row of a report document (shared/views/reports.py), in the report's order."""
    now = parse_time_or_none(report["generatedAt"])
    return [finding(row, tenant_id=tenant["tenantId"], tenant_name=tenant["displayName"], now=now,
                    product_version=product_version)
            for tenant in report["tenants"] for row in tenant["controls"]]


def to_json(findings: Iterable[dict[str, Any]]) -> str:
    """A JSON array of findings (what SIEM importers and Prowler's json-ocsf take)."""
    return json.dumps(list(findings), indent=2, ensure_ascii=False) + "\n"
