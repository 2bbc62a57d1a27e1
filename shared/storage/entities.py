"""Table entity shapes shared by the stores: a control result as properties, evidence that fits in one property, and
a JSON document chunked across properties.

Both `ResultStore` (one row per control) and `TenantStore` (a result row beside the tenant's state) write a result
with exactly these properties, so a result reads back the same whichever store wrote it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shared.model import ControlResult, Severity, Status

# A Table property holds at most 64 KiB (32 K UTF-16 characters); stay well clear of it.
MAX_PROPERTY_CHARS = 30_000
MAX_EVIDENCE_CHARS = MAX_PROPERTY_CHARS
# An entity holds at most 1 MiB, counted as the service stores it: 2 bytes per UTF-16 character plus a few bytes per
# property. Documents are written as ASCII JSON (json.dumps escapes everything else), so one character is one UTF-16
# unit; 520,000 characters + 18 chunk properties + keys stay under 1,048,576 bytes. Azurite does not enforce the
# 1 MiB limit, the real service does (EntityTooLarge), hence a hard client-side cap.
MAX_DOCUMENT_CHARS = 520_000


@dataclass(frozen=True)
class StoredResult:
    tenant_id: str
    result: ControlResult
    evaluated_at: datetime


def evidence_json(evidence: dict[str, Any]) -> str:
    """The evidence as JSON text short enough for one property; summarised (counts kept) when it is not."""
    text = json.dumps(evidence, sort_keys=True, default=str)
    if len(text) <= MAX_EVIDENCE_CHARS:
        return text
    # Too big for one property: keep every scalar and the size of every list so no count is lost.
    summary: dict[str, Any] = {"truncated": True}
    for key, value in evidence.items():
        if isinstance(value, list):
            summary[f"{key}Count"] = len(value)
            summary[key] = value[:20]
        elif isinstance(value, dict):
            summary[f"{key}Keys"] = len(value)
        else:
            summary[key] = value
    text = json.dumps(summary, sort_keys=True, default=str)
    return text if len(text) <= MAX_EVIDENCE_CHARS else json.dumps({"truncated": True})


def result_properties(result: ControlResult, evaluated_at: datetime) -> dict[str, Any]:
    """Every property of a result row except the keys (the stores key results differently)."""
    return {
        "Status": str(result.status),
        "Severity": str(result.severity),
        "Summary": result.summary,
        "Evidence": evidence_json(result.evidence),
        "Frameworks": json.dumps(list(result.frameworks)),
        "Remediation": result.remediation,
        "EvaluatedAt": evaluated_at,
    }


def same_result(result: ControlResult, stored: StoredResult | None) -> bool:
    """Whether writing `result` would store exactly what `stored` holds, apart from its evaluation time (compared as
    the properties written, so evidence that only round-trips differently counts as a change: written, never lost)."""
    if stored is None or stored.result.control != result.control:
        return False
    moment = stored.evaluated_at
    return result_properties(result, moment) == result_properties(stored.result, moment)


def results_stamp(entity: dict[str, Any]) -> tuple[datetime, frozenset[str]] | None:
    """A state row's ResultsAt and ResultsFor: when the controls listed were last evaluated (None: not recorded)."""
    at, names = entity.get("ResultsAt"), entity.get("ResultsFor")
    if not isinstance(at, datetime) or not isinstance(names, str):
        return None
    try:
        return at, frozenset(json.loads(names))
    except (ValueError, TypeError):
        return None


def stored_result(tenant_id: str, control: str, entity: dict[str, Any]) -> StoredResult:
    """Read a result row written with `result_properties`; `control` comes from the store's RowKey scheme."""
    return StoredResult(
        tenant_id=tenant_id,
        result=ControlResult(
            control=control,
            status=Status(entity["Status"]),
            severity=Severity(entity["Severity"]),
            summary=entity.get("Summary", ""),
            evidence=json.loads(entity.get("Evidence") or "{}"),
            frameworks=tuple(json.loads(entity.get("Frameworks") or "[]")),
            remediation=entity.get("Remediation", ""),
        ),
        evaluated_at=entity["EvaluatedAt"],
    )


class DocumentTooLarge(ValueError):
    """A state or baseline document does not fit in one entity; the caller has to keep it compact."""


class DocumentCorrupt(ValueError):
    """A stored document cannot be reassembled (missing chunk, wrong length): never returned half-read."""


def document_properties(tenant_id: str, kind: str, document: dict[str, Any]) -> dict[str, Any]:
    """The document as JSON text split over Data00..DataNN (≤ 30,000 characters each), with Chunks and Length."""
    text = json.dumps(document, separators=(",", ":"))  # ASCII only: one character = one UTF-16 unit
    if len(text) > MAX_DOCUMENT_CHARS:
        raise DocumentTooLarge(
            f"tenant {tenant_id}: the {kind} document is {len(text):,} characters of JSON; one Table entity holds at "
            f"most {MAX_DOCUMENT_CHARS:,} (1 MiB). Keep the {kind} compact (summaries and counts, not raw lists)."
        )
    chunks = [text[start:start + MAX_PROPERTY_CHARS] for start in range(0, len(text), MAX_PROPERTY_CHARS)]
    properties: dict[str, Any] = {f"Data{index:02d}": chunk for index, chunk in enumerate(chunks)}
    properties["Chunks"] = len(chunks)
    properties["Length"] = len(text)
    return properties


def read_document(tenant_id: str, entity: dict[str, Any]) -> dict[str, Any]:
    """Reassemble a document written by `document_properties`, checking every chunk is there and the length."""
    chunks, length = entity.get("Chunks"), entity.get("Length")
    parts = [entity.get(f"Data{index:02d}") for index in range(chunks or 0)]
    if not chunks or any(not isinstance(part, str) for part in parts):
        raise DocumentCorrupt(f"tenant {tenant_id}: row {entity['RowKey']} is missing chunks (Chunks={chunks!r})")
    text = "".join(parts)  # type: ignore[arg-type]
    if len(text) != length:
        raise DocumentCorrupt(f"tenant {tenant_id}: row {entity['RowKey']} reassembles to {len(text)} characters, "
                              f"expected {length}")
    return json.loads(text)
