"""The report's Onboarding section (issue 20): every GDAP customer's onboarding state and its one fix, as the
dashboard's Onboarding page shows them (shared/views/onboarding_view.py). Present only when at least one customer
has an onboarding record; a report of one tenant keeps that tenant's row only. The control filters and
--failing-only do not apply to it (as for `readiness`): it is about onboarding, not controls.

JSON: `"onboarding": {"customers": [{"tenantId", "name", "state", "label", "fix", "detail", "needsFix",
"updatedAt", …}], "counts": {state: n}, "needsFix": n, "truncated": bool}` (ONBOARDING_SCHEMA).
CSV: after the controls' table, one blank line, then a second table with its own header (ONBOARDING_CSV_COLUMNS),
every row starting with `onboarding`, so a reader can split the file at the blank line or filter on the first cell.
HTML: a section after the readiness one, customers needing a fix first.
"""

from __future__ import annotations

import csv
import html
import io
from typing import Any, Callable

from shared.views.onboarding_view import LABELS, ORDER

ONBOARDING_CSV_COLUMNS = ("section", "tenant_id", "tenant_name", "state", "state_label", "fix", "detail",
                          "updated_at")
# The report's status colours (report_html.py's s-* classes) for each onboarding state.
_COLOUR = {"ready": "pass", "in_progress": "pending", "relationship_ended": "unknown", "failed": "fail",
           "lacks_role": "fail", "missing_exchange_role": "fail", "removed": "unknown"}
_STR, _NULL_STR = {"type": "string"}, {"type": ["string", "null"]}
ONBOARDING_SCHEMA: dict[str, Any] = {
    "type": "object", "required": ["customers", "counts", "needsFix"],
    "properties": {
        "needsFix": {"type": "integer"}, "counts": {"type": "object"}, "truncated": {"type": "boolean"},
        "customers": {"type": "array", "items": {
            "type": "object", "required": ["tenantId", "name", "state", "label", "fix", "detail", "updatedAt"],
            "properties": {"tenantId": _STR, "name": _STR, "state": {"enum": list(ORDER)},
                           "label": {"enum": list(LABELS.values())}, "fix": _STR, "detail": _STR,
                           "needsFix": {"type": "boolean"}, "updatedAt": _NULL_STR}}}}}


def section(overview: dict[str, Any], *, tenant_id: str | None = None) -> dict[str, Any] | None:
    """The report's section from onboarding_overview()'s answer (one tenant's row when `tenant_id` is given), or
    None when there is no row to show."""
    customers = [row for row in overview["customers"] if tenant_id is None or row["tenantId"] == tenant_id]
    if not customers:
        return None
    counts = {state: 0 for state in ORDER}
    for row in customers:
        counts[row["state"]] += 1
    return {"customers": customers, "counts": counts, "needsFix": len(customers) - counts["ready"],
            "truncated": bool(overview.get("truncated")) and tenant_id is None}


def csv_table(onboarding: dict[str, Any] | None, cell: Callable[[Any], str]) -> str:
    """The CSV's second table ("" without a section); `cell` is the report's formula-safe cell (reports.csv_cell)."""
    if not onboarding:
        return ""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(ONBOARDING_CSV_COLUMNS)
    for row in onboarding["customers"]:
        writer.writerow(["onboarding", *map(cell, (row["tenantId"], row["name"], row["state"], row["label"],
                                                   row["fix"], row["detail"], row["updatedAt"]))])
    return "\n" + out.getvalue()


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def html_section(onboarding: dict[str, Any] | None) -> str:
    """The HTML report's Onboarding section ("" without one): counts, then a row per customer, worst first."""
    if not onboarding:
        return ""
    counts = onboarding["counts"]
    said = ", ".join(f"{counts[state]} {LABELS[state].lower()}" for state in ORDER if counts.get(state))
    rows = "".join(
        f'<tr data-tenant-id="{_e(row["tenantId"])}" data-state="{_e(row["state"])}"><td class="s '
        f's-{_COLOUR[row["state"]]}">{_e(row["label"])}</td><td><b>{_e(row["name"])}</b><br><span class="muted '
        f'mono">{_e(row["tenantId"])}</span></td><td>{_e(row["fix"]) or "Nothing to do: watched."}</td>'
        f'<td class="muted">{_e(row["detail"])}</td><td class="when">{_e(row["updatedAt"] or "")}</td></tr>'
        for row in onboarding["customers"])
    cut = ('<p class="error">Only the first customers read are listed: more onboarding records exist than a report '
           'reads.</p>' if onboarding.get("truncated") else "")
    return (f'<section class="onboarding"><h2>Onboarding (GDAP)</h2><p>{len(onboarding["customers"])} '
            f'customer(s), {onboarding["needsFix"]} needing a fix: {_e(said)}. Those needing a fix first.</p>{cut}'
            '<table><thead><tr><th>State</th><th>Customer</th><th>The fix</th><th>Why</th><th>Updated</th></tr>'
            f'</thead><tbody>{rows}</tbody></table></section>')
