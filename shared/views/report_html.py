"""The fleet report as one self-contained HTML page (inline CSS, no script): summary, then one section per tenant
with its controls, open alerts and enforcement windows. Input is the report document of shared/views/reports.py.
"""

from __future__ import annotations

import html
import re
from typing import Any

from shared.views.report_onboarding import html_section as onboarding_html

# One word per control status, in the legend's order (the report schema's CONTROL_STATUSES).
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
.exc { font-weight: 400; font-size: 10px; }
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
    unreachable = tenant.get("unreachable")
    if unreachable:
        parts.append(f'<p class="error unreachable"><b>Unreachable:</b> {_e(unreachable["reason"])}<br>'
                     f'<b>How to fix it:</b> {_e(unreachable["fix"])}</p>')
    elif tenant["lastError"]:
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
    if tenant.get("timeline"):
        parts.append("<h3>Timeline</h3><ul class=\"timeline\">")
        # Text only, sources without their scheme (_cite): the report stays one offline file.
        parts += [f'<li><span class="when">{_e(row["when"])}</span> <code>{_e(row["kind"])}</code> {_cite(row["what"])}'
                  + (f' · by {_e(row["by"])}' if row["by"] else "")
                  + (f'<div class="change">{_cite(row["change"])}</div>' if row["change"] else "")
                  + (f'<div class="when">in force: {_cite(row["inForce"])}</div>' if row["inForce"] else "")
                  + (f'<div class="muted">{_cite(row["notes"])}</div>' if row["notes"] else "") + "</li>"
                  for row in tenant["timeline"]]
        parts.append("</ul>")
    parts.append(_exceptions(tenant.get("exceptions") or []))
    if unreachable and all(row["evaluatedAt"] is None for row in tenant["controls"]):
        shown = len(tenant["controls"])
        parts.append(f'<p class="muted collapsed">{shown} control(s) not evaluated: authwatch cannot read this '
                     'tenant (above).</p></section>')
        return "\n".join(parts)
    hidden = tenant.get("hiddenControls") or 0
    parts.append('<h3>Controls</h3>' + (f'<p class="muted">{hidden} control(s) passing or filtered out are not '
                                        'listed.</p>' if hidden else '') +
                 '<table><thead><tr><th>Status</th><th>Control</th><th>What authwatch found</th>'
                 '<th>How to fix it</th></tr></thead><tbody>')
    for row in tenant["controls"]:
        fix = f'<pre>{_e(row["remediation"])}</pre>' if row["remediation"] and row["status"] in ("fail", "pending") \
            else ""
        covered = (f'<br><span class="exc">exception {_e(", ".join(row["exception"]))}</span>'
                   if row.get("exception") else "")
        parts.append(f'<tr data-control="{_e(row["control"])}"><td class="s s-{_e(row["status"])}">'
                     f'{_WORD.get(row["status"], _e(row["status"]))}{covered}</td><td><b>{_e(row["title"])}</b><br>'
                     f'<span class="when mono">{_e(row["control"])} · {_e(row["severity"])}</span></td>'
                     f'<td>{_e(row["summary"])}</td><td>{fix}</td></tr>')
    parts.append("</tbody></table></section>")
    return "\n".join(parts)


def _exceptions(items: list[dict[str, Any]]) -> str:
    """The tenant's exceptions: what is accepted, whose it is, why, and until when (legacy exclusions last)."""
    if not items:
        return ""
    rows = []
    for x in items:
        scope = "; ".join(f"{kind}: {', '.join(map(str, ids))}" for kind, ids in (x.get("scope") or {}).items())
        soon = " · expiring soon" if x.get("status") == "expiring soon" else ""
        left = ("no expiry" if x.get("legacy") else "expired" if x.get("status") == "expired"
                else f'{x.get("daysLeft")} day(s){soon}')
        rows.append(f'<tr data-exception-id="{_e(x.get("id"))}" data-status="{_e(x.get("status"))}"><td class="mono">'
                    f'{_e(x.get("id"))}{" (legacy)" if x.get("legacy") else ""}</td><td class="mono">'
                    f'{_e(x.get("control"))}</td><td>{_e(scope or "(whole control)")}</td>'
                    f'<td>{_e(x.get("owner") or "(none)")}</td><td>{_e(x.get("reason"))}</td>'
                    f'<td>{_e(x.get("expiresAt") or "never")}<br><span class="when">{_e(left)}</span></td></tr>')
    return ('<h3>Exceptions</h3><table class="exceptions"><thead><tr><th>Id</th><th>Control</th><th>Scope</th>'
            '<th>Owner</th><th>Reason</th><th>Expires</th></tr></thead><tbody>' + "".join(rows) + '</tbody></table>')


def _quiet(quiet: list[dict[str, Any]]) -> str:
    if not quiet:
        return ""
    lines = "".join(f'<li data-tenant-id="{_e(t["tenantId"])}"><b>{_e(t["displayName"])}</b> '
                    f'<span class="badge t-{_e(t["status"]).replace(" ", "-")}">{_e(t["status"])}</span> '
                    f'nothing failing ({t.get("hiddenControls", 0)} control(s) passing, not applicable or filtered '
                    f'out; {len(t["openAlerts"])} open alert(s))</li>' for t in quiet)
    return f'<h2>Nothing failing</h2><ul class="quiet">{lines}</ul>'


_VERDICT = {"will-break": ("fail", "WILL BREAK"), "check": ("unknown", "CHECK"),
            "refused-now": ("pending", "REFUSED NOW"), "no-data": ("not_applicable", "NO DATA"),
            "ready": ("pass", "READY")}
_OUTCOME = {"breaks": ("fail", "BREAKS"), "unknown": ("unknown", "UNKNOWN"), "refused": ("pending", "REFUSED")}


def _cite(text: str) -> str:
    """Sources named as text without their scheme: the report links to nothing and fetches nothing (offline)."""
    return _e(re.sub(r"https?://", "", text))


def _readiness(readiness: dict[str, Any] | None) -> str:
    """SMTP AUTH Basic readiness (shared/views/readiness.py): tenants that will break first, one row per sender."""
    if not readiness:
        return ""
    rows = []
    quiet = [t for t in readiness["tenants"] if t["verdict"] in ("ready", "no-data")]  # one line for all of them
    for t in [t for t in readiness["tenants"] if t not in quiet]:
        css, word = _VERDICT.get(t["verdict"], ("unknown", t["verdict"]))
        rows.append(f'<tr class="r-tenant" data-tenant-id="{_e(t["tenantId"])}" data-verdict="{_e(t["verdict"])}">'
                    f'<td class="s s-{css}">{_e(word)}</td><td colspan="5"><b>{_e(t["displayName"])}</b> · '
                    f'{_e(t["headline"])}<br><span class="muted">SMTP AUTH {_e(t["settings"]["smtpAuth"])} for the '
                    f'organisation · Basic SMTP by policy: {_e(t["settings"]["basicSmtpPolicy"])} ('
                    f'{_e(t["settings"]["policyWhy"])}){"".join(" · " + _e(n) for n in t["notes"])}</span></td></tr>')
        for sender in t["senders"]:
            css, word = _OUTCOME.get(sender["outcome"], ("unknown", sender["outcome"]))
            rows.append(f'<tr class="r-sender" data-outcome="{_e(sender["outcome"])}"><td class="s s-{css}">'
                        f'{_e(word)}</td><td><b>{_e(sender["user"])}</b><br><span class="muted">mailbox '
                        f'{_e(sender["mailbox"])}</span></td><td class="mono">{_e(", ".join(sender["clientIps"]))}'
                        f'</td><td>{_e(sender["lastSeen"] or "")}<br><span class="muted">{sender["count"]} sign-in(s)'
                        f', {sender["failed"]} failed</span></td><td>{_e(sender["why"])}</td>'
                        f'<td>{_e(sender["fix"])}</td></tr>')
    options = "".join(f'<li><b>{_e(o["name"])}</b>: {_e(o["when"])}. <span class="mono">{_cite(o["url"])}'
                      '</span></li>' for o in readiness["fixOptions"])
    counts = readiness["summary"]["verdicts"]
    return (f'<section class="readiness"><h2>SMTP AUTH Basic readiness: switch-off {_e(readiness["switchOff"])} '
            f'({_e(readiness["announcement"])})</h2><p>{counts.get("will-break", 0)} tenant(s) will break, '
            f'{readiness["summary"]["breakingSenders"]} sender(s) in all; worst first.</p>'
            f'<p class="muted">{_e(readiness["knows"])} <span class="mono">'
            f'{_cite(readiness["sources"]["smtpAuthClientsReport"])}</span></p>'
            f'<table><thead><tr><th>Outcome</th><th>Sender (user, mailbox)</th><th>Client IP</th>'
            f'<th>Last seen</th><th>Why</th><th>Fix</th></tr></thead><tbody>'
            f'{"".join(rows) or "<tr><td colspan=6>No tenant has an SMTP AUTH sender.</td></tr>"}</tbody></table>'
            + ('<p class="r-quiet">No sender seen: ' + "; ".join(
                f'{_e(t["displayName"])} ({_e(_VERDICT.get(t["verdict"], ("", t["verdict"]))[1].lower())}: '
                f'{_e(t["headline"])})' for t in quiet) + '</p>' if quiet else '') +
            f'<h3>Ways off Basic SMTP AUTH</h3><ul>{options}</ul>'
            f'<p class="muted">{_cite(readiness["stopgap"])}</p>'
            '</section>')


def _filters(report: dict[str, Any]) -> str:
    filters = report.get("filters") or {}
    said = (["failing, pending and unknown controls only"] if filters.get("failingOnly") else []) + \
        [f'{key} {", ".join(values)}' for key in ("status", "control", "severity") if (values := filters.get(key))]
    return f' <span class="muted">· showing {_e("; ".join(said))}</span>' if said else ""


def to_html(report: dict[str, Any]) -> str:
    controls = report["controls"]
    tenants = report["tenants"]
    summary = report["summary"]
    scope = report["scope"]
    title = ("authwatch report — " + tenants[0]["displayName"]) if scope["kind"] == "tenant" and tenants \
        else "authwatch report — fleet"
    head = "".join(f'<th title="{_e(c["title"])}">{_e(c["label"])}</th>' for c in controls)
    failing_only = (report.get("filters") or {}).get("failingOnly")
    quiet = [t for t in tenants if failing_only and not t["controls"]]  # nothing failing: one line each
    tenants = [t for t in tenants if t not in quiet]
    matrix = []
    for tenant in tenants:
        by_id = {row["control"]: row for row in tenant["controls"]}
        if tenant.get("unreachable"):
            cells = (f'<td class="s s-unknown" colspan="{len(controls)}">UNREACHABLE: '
                     f'{_e(tenant["unreachable"]["reason"])}</td>')
        else:
            cells = "".join(f'<td class="s s-{_e(by_id[c["id"]]["status"])}" title="{_e(by_id[c["id"]]["summary"])}">'
                            f'{_WORD.get(by_id[c["id"]]["status"], _e(by_id[c["id"]]["status"]))}</td>'
                            if c["id"] in by_id else '<td class="s"></td>' for c in controls)
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
    legend = "".join(f'<span class="s-{s}">{_WORD[s]}</span>' for s in _WORD) + _filters(report)
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
{_readiness(report.get("readiness"))}
{onboarding_html(report.get("onboarding"))}
{_quiet(quiet)}
{chr(10).join(_tenant_html(tenant) for tenant in tenants)}
<footer>authwatch · {len(tenants)} tenant(s) · controls: {_e(", ".join(c["id"] for c in controls))}</footer>
</body></html>
"""
