"""The report as an HTTP download (`GET /api/report`), for the dashboard's "HTML report" link and for scripts: the
same document `authwatch report` writes, from the query string instead of flags.

    GET /api/report?format=html|csv|json|ocsf&failingOnly=true&tenant=<id>&status=fail,unknown&control=…&severity=high

A value authwatch does not know is a 400 naming it (the API's BadRequest), never an empty or silently unfiltered
report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.model import Severity, Status
from shared.views import api
from shared.views.reports import FORMATS, build_report, catalogue, render

MEDIA_TYPES = {"html": "text/html; charset=utf-8", "csv": "text/csv; charset=utf-8",
               "json": "application/json", "ocsf": "application/json"}


@dataclass(frozen=True)
class Download:
    """A response that is a file, not the API's JSON: the route answers it with its own media type."""

    content: str
    media_type: str
    filename: str

    @property
    def disposition(self) -> str:
        # HTML opens in the browser (it prints and works offline); the others download.
        kind = "inline" if self.media_type.startswith("text/html") else "attachment"
        return f'{kind}; filename="{self.filename}"'


def _values(query: Mapping[str, str], name: str, allowed: set[str]) -> list[str] | None:
    raw = query.get(name)
    if raw is None or not raw.strip():
        return None
    values = [value.strip() for value in raw.split(",") if value.strip()]
    unknown = [value for value in values if value not in allowed]
    if unknown:
        raise api.BadRequest(f"{name}: {unknown[0][:64]!r} is not one of {', '.join(sorted(allowed))}")
    return values


def _flag(query: Mapping[str, str], name: str) -> bool:
    raw = (query.get(name) or "false").strip().lower()
    if raw not in ("true", "false", "1", "0"):
        raise api.BadRequest(f"{name}: expected true or false, got {raw[:20]!r}")
    return raw in ("true", "1")


async def report_download(fleet: Any, query: Mapping[str, str], *, now: datetime) -> Download:
    fmt = (query.get("format") or "html").strip().lower()
    if fmt not in FORMATS:
        raise api.BadRequest(f"format: expected one of {', '.join(FORMATS)}, got {fmt[:20]!r}")
    filters: dict[str, list[str] | None] = {
        "status": _values(query, "status", {str(status) for status in Status}),
        "control": _values(query, "control", {control["id"] for control in catalogue()}),
        "severity": _values(query, "severity", {str(severity) for severity in Severity}),
    }
    tenant = query.get("tenant")
    report = await build_report(fleet, now=now, tenant_id=tenant, failing_only=_flag(query, "failingOnly"),
                                filters=filters)
    extension = "json" if fmt in ("json", "ocsf") else fmt
    return Download(render(report, fmt), MEDIA_TYPES[fmt], f"authwatch-report.{extension}")
