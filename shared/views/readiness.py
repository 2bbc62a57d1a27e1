"""SMTP AUTH Basic readiness (issue 18 item 3): who still sends with SMTP AUTH, and who breaks when Basic goes off.

Microsoft's MC786329 (updated January 27, 2026) turns SMTP AUTH Basic authentication off by default for existing
tenants at the end of December 2026; an admin can turn it back on, the final removal date is announced in the
second half of 2027, and a refused client gets `550 5.7.30`
(https://techcommunity.microsoft.com/blog/exchange/updated-exchange-online-smtp-auth-basic-authentication-deprecation-timeline/4489835,
https://techcommunity.microsoft.com/blog/exchange/exchange-online-to-retire-basic-auth-for-client-submission-smtp-auth/4114750).

What authwatch can and cannot know, from the data it reads app-only (said in every answer, KNOWS below):
- WHO sends: Entra records an SMTP AUTH user sign-in with clientAppUsed "Authenticated SMTP", a client app Microsoft
  lists among the legacy authentication clients
  (https://learn.microsoft.com/en-us/entra/identity/conditional-access/block-legacy-authentication#identify-legacy-authentication-use).
  authwatch keeps the legacy sign-ins of the last 48 hours in the tenant's state (shared/state/compare.py,
  `recentLegacySignIns`: id, createdDateTime, userId, userPrincipalName, clientAppUsed, ipAddress, status).
- NOT Basic from OAuth: no documented signIn field says which one an SMTP AUTH session used, and Microsoft does not
  document how an OAuth (XOAUTH2) SMTP token request is logged; v1.0 List signIns returns user sign-ins only
  (https://learn.microsoft.com/en-us/graph/api/signin-list), so an app using client credentials (SMTP.SendAsApp)
  has no user sign-in there at all. A successful "Authenticated SMTP" sign-in is therefore read as PROBABLY Basic.
- The authoritative split is the Exchange admin center's SMTP AUTH clients report, whose Authentication Protocol
  column ("Basic" or "OAuth") Microsoft added on October 18, 2024 (MC786329 update;
  https://learn.microsoft.com/en-us/exchange/monitoring/mail-flow-reports/mfr-smtp-auth-clients-report). Microsoft
  documents it as an admin-center page with a CSV export only, not as a Graph report or an app-only cmdlet, so
  authwatch cannot read it: the answer tells the admin to confirm there.

Whether a sender breaks comes from the stored results of three controls (via api.tenant_detail): the tenant's SMTP
AUTH setting (exo_smtp_auth_disabled), the mailbox overrides (exo_smtp_auth_mailbox_overrides: the first 20 are
named) and the applied authentication policies (exo_basic_auth_policy: per policy, not per user, so a user's own
policy is known only when every applied policy agrees). Pure, apart from `smtp_basic` which reads storage.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any, Iterable

from shared.controls.base import as_bool
from shared.controls.signins import legacy_protocol, succeeded
from shared.model import format_time, parse_time_or_none
from shared.state.compare import EVIDENCE_HOURS, MAX_REMEMBERED_SIGNINS
from shared.views import api

KIND = "smtp-basic"
SMTP_APP = "Authenticated SMTP"
SWITCH_OFF = "end of December 2026"
TIMELINE_URL = ("https://techcommunity.microsoft.com/blog/exchange/"
                "updated-exchange-online-smtp-auth-basic-authentication-deprecation-timeline/4489835")
REPORT_URL = "https://learn.microsoft.com/en-us/exchange/monitoring/mail-flow-reports/mfr-smtp-auth-clients-report"
KNOWS = (f"authwatch sees who signs in with SMTP AUTH: Entra logs these user sign-ins as client app \"{SMTP_APP}\" "
         f"and authwatch keeps the last {EVIDENCE_HOURS} hours of them. It cannot tell Basic from OAuth: no documented "
         "sign-in field says which one SMTP AUTH used, and Microsoft does not document how an OAuth (XOAUTH2) SMTP "
         "token request is logged (an app using client credentials has no user sign-in at all). So each sender "
         "below is PROBABLY Basic. Confirm in the Exchange admin center: Reports > Mail flow > SMTP AUTH clients, "
         "Authentication Protocol column (Basic or OAuth); Microsoft offers that report in the admin center and as a "
         "CSV export only, not to an app.")
SOURCES = {
    "timeline": TIMELINE_URL,
    "smtpAuthClientsReport": REPORT_URL,
    "legacyClientApps": "https://learn.microsoft.com/en-us/entra/identity/conditional-access/"
                        "block-legacy-authentication#identify-legacy-authentication-use",
    "signInList": "https://learn.microsoft.com/en-us/graph/api/signin-list",
    "smtpAuthSetting": "https://learn.microsoft.com/en-us/exchange/clients-and-mobile-in-exchange-online/"
                       "authenticated-client-smtp-submission",
}
# The ways off Basic SMTP AUTH Microsoft names (MC786329 and the pages below), most direct first.
FIX_OPTIONS: tuple[dict[str, str], ...] = (
    {"id": "oauth", "name": "OAuth for SMTP AUTH",
     "when": "the client supports OAuth 2.0 (XOAUTH2): same endpoint, smtp.office365.com:587; SMTP.Send for a user, "
             "or client credentials with SMTP.SendAsApp and an Exchange service principal for an unattended app",
     "url": "https://learn.microsoft.com/en-us/exchange/client-developer/legacy-protocols/"
            "how-to-authenticate-an-imap-pop-smtp-application-by-using-oauth"},
    {"id": "connector", "name": "Connector-based relay",
     "when": "a device or app that cannot do OAuth and sends from a static public IP (or with a certificate): it "
             "sends to the tenant's MX endpoint on port 25 through an inbound connector, no mailbox sign-in",
     "url": "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/"
            "how-to-set-up-a-multifunction-device-or-application-to-send-email-using-microsoft-365-or-office-365"},
    {"id": "hve", "name": "High Volume Email",
     "when": "a line-of-business app that mails internal recipients",
     "url": "https://learn.microsoft.com/en-us/exchange/mail-flow-best-practices/high-volume-mails-m365"},
    {"id": "acs", "name": "Azure Communication Services Email",
     "when": "an app that mails external recipients (transactional mail), over SMTP with Entra app credentials",
     "url": "https://learn.microsoft.com/en-us/azure/communication-services/quickstarts/email/send-email-smtp/"
            "send-email-smtp"},
)
STOPGAP = (f"Stopgap, not a fix: after the switch-off an admin can turn SMTP AUTH Basic back on until Microsoft's "
           f"final removal date, to be announced in the second half of 2027 ({TIMELINE_URL}).")

# Tenant verdicts, worst first (the fleet's order).
VERDICTS = ("will-break", "check", "refused-now", "no-data", "ready")
OUTCOMES = ("breaks", "unknown", "refused")  # per sender, worst first
MAX_IPS = 10
_SMTP, _OVERRIDES, _POLICY = "exo_smtp_auth_disabled", "exo_smtp_auth_mailbox_overrides", "exo_basic_auth_policy"


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def _results(detail: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item.get("control"): item for item in detail.get("controls") or [] if isinstance(item, dict)}


def _evidence(result: dict[str, Any] | None) -> dict[str, Any]:
    evidence = (result or {}).get("evidence")
    return evidence if isinstance(evidence, dict) else {}


# --- the tenant's settings, as far as the stored evidence tells them ---------------------------------------------

def _tenant_smtp(results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """SMTP AUTH for the organisation (on / off / unknown) and the mailboxes that turn it on for themselves."""
    raw = _evidence(results.get(_SMTP)).get("SmtpClientAuthenticationDisabled")
    disabled = as_bool(raw) if _SMTP in results else None
    overrides = _evidence(results.get(_OVERRIDES))
    named = [box for box in overrides.get("overrides") or [] if isinstance(box, dict)]
    count = overrides.get("overrideCount") if isinstance(overrides.get("overrideCount"), int) else None
    return {"tenant": "unknown" if disabled is None else ("off" if disabled else "on"),
            "overrides": count, "overridesNamed": named,
            "overridesKnown": (results.get(_OVERRIDES) or {}).get("status") in ("pass", "fail"),
            "explicitlyDisabled": overrides.get("explicitlyDisabled") or 0}


def _policy(results: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Whether the applied authentication policies allow Basic SMTP AUTH: allowed / blocked / unknown, and why.
    The stored evidence is per policy, not per user: a user's own policy is known only when every applied policy
    (and the organisation default) agrees."""
    result = results.get(_POLICY)
    status, evidence = (result or {}).get("status"), _evidence(result)
    default = _text(evidence.get("defaultPolicy"))
    applied = [p for p in evidence.get("appliedPolicies") or [] if isinstance(p, dict)]
    allowing = [p for p in evidence.get("appliedPoliciesAllowingBasic") or [] if isinstance(p, dict)]
    count = evidence.get("appliedPolicyCount") if isinstance(evidence.get("appliedPolicyCount"), int) else len(applied)
    if status == "fail":
        names = ", ".join(f"'{p.get('policy')}'" for p in allowing[:3])
        if len(allowing) >= count:
            return {"basicSmtp": "allowed", "why": f"every applied authentication policy allows Basic SMTP ({names})"}
        if any(p.get("isDefault") for p in allowing):
            return {"basicSmtp": "allowed", "why": f"the organisation default policy '{default}' allows Basic SMTP "
                                                   "(unless this user has a stricter policy of their own)"}
        return {"basicSmtp": "unknown", "why": f"only some users' policies allow Basic SMTP ({names}) and authwatch "
                                               "does not store which user has which; a sender still succeeding "
                                               "likely has one of them (or uses OAuth)"}
    if status == "pass":
        if count == 0:
            return {"basicSmtp": "allowed", "why": "no authentication policy is applied, so Microsoft's defaults allow "
                                                   "Basic SMTP wherever SMTP AUTH is on"}
        if default and any(p.get("isDefault") for p in applied):
            return {"basicSmtp": "blocked", "why": f"every applied authentication policy, the default '{default}' "
                                                   "included, blocks Basic SMTP"}
        return {"basicSmtp": "allowed", "why": "there is no default authentication policy, so users without a policy "
                                               "of their own follow Microsoft's defaults, which allow Basic SMTP"}
    return {"basicSmtp": "unknown", "why": f"the authentication policies could not be read ({_POLICY} is "
                                           f"{status or 'not evaluated'})"}


def _override_for(smtp: dict[str, Any], upn: str | None, user_id: str | None) -> dict[str, Any] | None:
    for box in smtp["overridesNamed"]:
        if (upn and str(box.get("PrimarySmtpAddress") or "").lower() == upn.lower()) or \
                (user_id and str(box.get("ExternalDirectoryObjectId") or "").lower() == user_id.lower()):
            return box
    return None


def _mailbox_smtp(smtp: dict[str, Any], override: dict[str, Any] | None) -> dict[str, str]:
    """SMTP AUTH for one sender's mailbox: on / off / unknown, and why."""
    if override is not None:
        return {"effective": "on", "why": "the mailbox turns SMTP AUTH on for itself (Set-CASMailbox override)"}
    if smtp["tenant"] == "unknown":
        return {"effective": "unknown", "why": "the organisation's SMTP AUTH setting could not be read"}
    if smtp["tenant"] == "on":
        maybe = " (unless this mailbox is one that turns it off)" if smtp["explicitlyDisabled"] else ""
        return {"effective": "on", "why": f"SMTP AUTH is on for the organisation{maybe}"}
    if not smtp["overridesKnown"] or (smtp["overrides"] or 0) > len(smtp["overridesNamed"]):
        return {"effective": "unknown", "why": "SMTP AUTH is off for the organisation, but not every mailbox "
                                               "override is known: this one may turn it back on"}
    return {"effective": "off", "why": "SMTP AUTH is off for the organisation and this mailbox does not override it"}


# --- senders ------------------------------------------------------------------------------------------------------

def smtp_signins(signins: Iterable[Any]) -> list[dict[str, Any]]:
    """The SMTP AUTH sign-ins among the remembered legacy ones."""
    return [s for s in signins if isinstance(s, dict) and legacy_protocol(s.get("clientAppUsed")) == SMTP_APP]


def _group(signins: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    senders: dict[str, dict[str, Any]] = {}
    for signin in signins:
        upn, user_id = _text(signin.get("userPrincipalName")), _text(signin.get("userId"))
        key = (user_id or upn or "(unknown user)").lower()
        sender = senders.setdefault(key, {"user": upn or user_id or "(unknown user)", "userId": user_id,
                                          "upn": upn, "count": 0, "failed": 0, "ips": {}, "okIps": {},
                                          "seen": []})
        ok = succeeded(signin)
        sender["count" if ok else "failed"] += 1
        at = parse_time_or_none(signin.get("createdDateTime"))
        ip = _text(signin.get("ipAddress"))
        if at is not None:
            sender["seen"].append((ok is True, at))
        for ips in ([sender["ips"], sender["okIps"]] if ok else [sender["ips"]]) if ip else []:
            before = ips.get(ip)
            ips[ip] = at if before is None else max(before, at) if at else before
    return senders


def _ips(raw: dict[str, datetime | None]) -> list[str]:
    return [ip for ip, _ in sorted(raw.items(), key=lambda kv: (kv[1] is None, -(kv[1].timestamp() if kv[1] else 0),
                                                                 kv[0]))][:MAX_IPS]


def _outcome(mailbox: dict[str, str], policy: dict[str, str], count: int) -> tuple[str, str]:
    if mailbox["effective"] == "off":
        return "refused", (f"{mailbox['why']}: SMTP AUTH is refused now, Basic or OAuth; what was seen came before "
                           "the change took effect (up to 24 hours)")
    if policy["basicSmtp"] == "blocked":
        return "refused", (f"Basic is refused now ({policy['why']}); a sender still succeeding after the policy's "
                           "24 hours uses OAuth, which the switch-off does not touch")
    if not count:
        return "refused", "every SMTP AUTH attempt in the look-back failed: it is not getting through now"
    if mailbox["effective"] == "on" and policy["basicSmtp"] == "allowed":
        return "breaks", (f"{mailbox['why']} and {policy['why']}; it works today and, if it uses Basic, is refused "
                          f"with 550 5.7.30 from the switch-off at the {SWITCH_OFF}")
    doubts = [part["why"] for part in (mailbox, policy) if (part.get("effective") or part.get("basicSmtp")) ==
              "unknown"]
    return "unknown", "; ".join(doubts) or "the settings do not say"


def _fix(outcome: str, user: str, ips: list[str], smtp_off: bool) -> str:
    where = f" at {', '.join(ips[:3])}" if ips else ""
    move = ("OAuth if the client supports it; if not, a connector-based relay for a device with a static IP, High "
            "Volume Email for an app mailing internal recipients, or Azure Communication Services for an app mailing "
            "outside")
    if outcome == "breaks":
        return (f"Move the client{where} that signs in as {user} off Basic before the switch-off at the "
                f"{SWITCH_OFF}: {move}. First confirm it is Basic in the SMTP AUTH clients report.")
    if outcome == "refused" and smtp_off:
        return (f"Already refused (SMTP AUTH is off for this mailbox): if mail from the client{where} ({user}) must "
                "still flow, use a connector-based relay, High Volume Email or Azure Communication Services, or OAuth "
                "with SMTP AUTH turned back on for this one mailbox; otherwise retire it.")
    if outcome == "refused":
        return (f"Already refused: if mail from the client{where} ({user}) must still flow, move it to {move}; "
                "otherwise retire it.")
    return (f"Check {user}'s authentication policy and mailbox override in Exchange (Get-User "
            f"AuthenticationPolicy, Get-CASMailbox SmtpClientAuthenticationDisabled); if Basic works for it, move the "
            f"client{where} to {move}.")


def _sender(raw: dict[str, Any], smtp: dict[str, Any], policy: dict[str, str]) -> dict[str, Any]:
    override = _override_for(smtp, raw["upn"], raw["userId"])
    mailbox = _mailbox_smtp(smtp, override)
    outcome, why = _outcome(mailbox, policy, raw["count"])
    good = [at for ok, at in raw["seen"] if ok] or [at for _, at in raw["seen"]]
    ips = _ips(raw["ips"] if not raw["count"] else raw["okIps"])  # where it sends from; else where it tried
    return {
        "user": raw["user"], "userId": raw["userId"],
        "mailbox": (override or {}).get("PrimarySmtpAddress") or raw["upn"] or raw["user"],
        "clientIps": ips, "lastSeen": format_time(max(good)) if good else None,
        "firstSeen": format_time(min(good)) if good else None,
        "count": raw["count"], "failed": raw["failed"], "authentication": "probably basic",
        "smtpAuth": mailbox, "policy": policy, "mailboxOverride": override is not None,
        "outcome": outcome, "why": why, "fix": _fix(outcome, raw["user"], ips, mailbox["effective"] == "off"),
        "fixOptions": [option["id"] for option in FIX_OPTIONS],
    }


# --- one tenant, the fleet ---------------------------------------------------------------------------------------

def tenant_readiness(detail: dict[str, Any], signins: list[Any] | None) -> dict[str, Any]:
    """One tenant's readiness from its tenant_detail answer and its state's recentLegacySignIns (None: the tenant has
    no state, or its state keeps no sign-ins)."""
    results = _results(detail)
    smtp, policy = _tenant_smtp(results), _policy(results)
    raw = smtp_signins(signins or [])
    order = {outcome: index for index, outcome in enumerate(OUTCOMES)}
    senders = sorted((_sender(s, smtp, policy) for s in _group(raw).values()),
                     key=lambda s: (order[s["outcome"]], -s["count"], s["user"].lower()))
    breaking = [s for s in senders if s["outcome"] == "breaks"]
    signin_result = results.get("entra_legacy_signins_blocked") or {}
    notes = []
    if signins is not None and len(signins) >= MAX_REMEMBERED_SIGNINS:
        notes.append(f"authwatch keeps at most {MAX_REMEMBERED_SIGNINS} legacy sign-ins per tenant: counts are a "
                     "floor and an older sender may be missing")
    if signin_result.get("status") == "unknown":
        notes.append(f"Sign-in evidence is incomplete: {signin_result.get('summary')}")
    if signins is None or detail.get("status") in ("never evaluated", "unreachable"):
        verdict = "no-data"
        headline = {"unreachable": "authwatch cannot read this tenant (see its status)",
                    "never evaluated": "Not evaluated yet: no sign-ins stored"}.get(
            str(detail.get("status")), "No sign-ins stored for this tenant")
    elif breaking:
        verdict = "will-break"
        headline = (f"{len(breaking)} sender(s) still sign in with SMTP AUTH where Basic works today: if they use "
                    f"Basic, they stop at the switch-off at the {SWITCH_OFF}")
    elif any(s["outcome"] == "unknown" for s in senders) or (not senders and signin_result.get("status") ==
                                                               "unknown"):
        verdict = "check"
        headline = "SMTP AUTH senders whose settings authwatch cannot read in full" if senders else \
            "No SMTP AUTH sender seen, but the sign-in evidence is incomplete"
    elif senders:
        verdict = "refused-now"
        headline = f"{len(senders)} SMTP AUTH sender(s) seen, already refused by the tenant's settings"
    else:
        verdict = "ready"
        headline = (f"No SMTP AUTH sign-in in the last {EVIDENCE_HOURS} hours" + (
            "; SMTP AUTH is off for the organisation" if smtp["tenant"] == "off" and not smtp["overrides"] else ""))
    collected = parse_time_or_none(detail.get("lastCollectedAt"))
    return {
        "tenantId": detail.get("tenantId"), "displayName": detail.get("displayName") or detail.get("tenantId"),
        "status": detail.get("status"), "verdict": verdict, "headline": headline,
        "breaking": len(breaking), "breakingSignIns": sum(s["count"] for s in breaking),
        "settings": {"smtpAuth": smtp["tenant"], "mailboxOverrides": smtp["overrides"],
                     "basicSmtpPolicy": policy["basicSmtp"], "policyWhy": policy["why"]},
        "lookback": {"hours": EVIDENCE_HOURS, "until": format_time(collected) if collected else None},
        "senders": senders, "notes": notes,
    }


def fleet_readiness(tenants: list[dict[str, Any]], *, now: datetime) -> dict[str, Any]:
    """The fleet's readiness, tenants that will break first (then by breaking senders, sign-ins, name)."""
    rank = {verdict: index for index, verdict in enumerate(VERDICTS)}
    ordered = sorted(tenants, key=lambda t: (rank.get(t["verdict"], len(VERDICTS)), -t["breaking"],
                                             -t["breakingSignIns"], str(t["displayName"]).lower()))
    counts = {verdict: sum(1 for t in ordered if t["verdict"] == verdict) for verdict in VERDICTS}
    return {
        "kind": KIND, "generatedAt": format_time(now), "switchOff": SWITCH_OFF, "announcement": "MC786329",
        "knows": KNOWS, "stopgap": STOPGAP, "sources": dict(SOURCES), "fixOptions": [dict(o) for o in FIX_OPTIONS],
        "summary": {"tenants": len(ordered), "verdicts": counts,
                    "breakingSenders": sum(t["breaking"] for t in ordered)},
        "tenants": ordered,
    }


def from_details(details: list[dict[str, Any]], *, now: datetime) -> dict[str, Any]:
    """The fleet readiness from tenant_detail answers that carry their state's sign-ins under
    `recentLegacySignIns` (as `with_signins` adds them; absent: not read)."""
    return fleet_readiness([tenant_readiness(d, d.get("recentLegacySignIns")) for d in details], now=now)


async def with_signins(fleet: Any, details: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each tenant_detail answer with its stored state's recentLegacySignIns added (None: no state)."""
    gate = asyncio.Semaphore(16)

    async def one(detail: dict[str, Any]) -> dict[str, Any]:
        async with gate:
            state = (await fleet.monitor.store.load(detail["tenantId"])).state
        remembered = state.get("recentLegacySignIns") if isinstance(state, dict) else None
        return {**detail, "recentLegacySignIns": remembered if isinstance(remembered, list) else None}

    return list(await asyncio.gather(*(one(detail) for detail in details)))


async def smtp_basic(fleet: Any, *, now: datetime, tenant_id: str | None = None) -> dict[str, Any]:
    """GET /api/readiness/smtp-basic and `authwatch readiness smtp-basic`: the fleet, or one tenant (LookupError
    when it is not registered)."""
    if tenant_id is not None:
        ids = [api.tenant_id_from(tenant_id)]
    else:
        ids = [summary["tenantId"] for summary in await api.list_tenants(fleet)]
    details = [await api.tenant_detail(fleet, tid, now=now, history_limit=1) for tid in ids]
    answer = from_details(await with_signins(fleet, details), now=now)
    answer["scope"] = {"kind": "tenant" if tenant_id is not None else "fleet",
                       "tenantId": ids[0] if tenant_id is not None else None}
    return answer
