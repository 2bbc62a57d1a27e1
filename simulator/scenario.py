"""Scenario loading and validation.

A scenario is plain JSON so tests and the demo can write it by hand. ``load_scenario`` returns a
*normalised deep copy*: every optional section is filled with the default a fresh Microsoft 365
tenant would show (defaults.py), so ``Simulator.update_tenant`` callbacks can mutate any part of it (for example
``t["graph"]["conditionalAccessPolicies"].append(...)``) without first checking it exists.
Validation is strict on purpose: a typo in a scenario should fail loudly with the field named,
not silently serve a default.
"""
from __future__ import annotations

import copy
import difflib
import functools
import json
import re
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .defaults import (
    DEFAULT_PERMISSIONS,
    EXCHANGE_ITEMS,
    GRAPH_ITEMS,
    default_exchange,
    default_graph,
)
from .limits import DEFAULT_LATENCY_WITH_LIMITS_MS, normalize_limits
from .partner import normalize_partner

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

#: Endpoint keys used by request_counts, requests_log and fault injection. Exchange keys are
#: ``exchange.<CmdletName>`` and are checked by prefix only (any cmdlet name may be faulted).
GRAPH_KEYS = (
    "graph.organization",
    "graph.securityDefaults",
    "graph.conditionalAccessPolicies",
    "graph.sharepointSettings",
    "graph.signIns",
    "graph.directoryAudits",
    "graph.batch",
    "graph.sendMail",
    "graph.auditLogQueries",
    "graph.auditLogRecords",
    # GDAP-delegated onboarding calls in a customer tenant (simulator/customer_graph.py)
    "graph.servicePrincipals",
    "graph.appRoleAssignments",
    "graph.roleAssignments",
    "graph.oauth2PermissionGrants",
)
ENDPOINT_KEYS = ("token", *GRAPH_KEYS)

TENANT_KEYS = {
    "tenantId", "displayName", "app", "consent", "exchangeRole", "licensed", "permissions", "mailSenders",
    "graph", "exchange", "faults", "auditRecords", "auditQuery", "delegatedGrants", "directoryRoles",
}
TOP_KEYS = {"app", "tenants", "pageSize", "tokenLifetime", "limits", "latencyMs", "partner"}
FAULT_KEYS = {"status", "times", "body", "rawBody", "retryAfter", "delay", "skip", "method"}
FAULT_METHODS = ("GET", "POST", "PATCH", "PUT", "DELETE")

# consent: true = the app's service principal is there with its app roles granted; false = no service principal
# (never consented, or the enterprise app was deleted); "revoked" = the service principal stays but its app role
# assignments were removed (Entra admin center > Enterprise applications > Permissions > Revoke): tokens are still
# issued, without a `roles` claim ("app-only tokens can be issued without a roles claim",
# https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow), and every API refuses.
CONSENT_STATES = (True, False, "revoked")

DEFAULT_PAGE_SIZE = {"graph": 100, "exchange": 1000}
DEFAULT_TOKEN_LIFETIME = 3599


def parse_datetime(value: Any) -> datetime:
    """Parse an ISO 8601 timestamp as Graph writes it (7 fractional digits, ``Z``); aware UTC."""
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 string, got {value!r}")
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(\.\d+)?(Z|[+-]\d{2}:?\d{2})?", value.strip())
    if not m:
        raise ValueError(f"not an ISO 8601 date-time: {value!r}")
    base, frac, tz = m.groups()
    # datetime keeps microseconds only: truncate Graph's 7th (100 ns) digit instead of rounding.
    text = base + ("." + frac[1:7].ljust(6, "0") if frac else "")
    if tz in (None, "Z"):
        tz = "+00:00"
    dt = datetime.fromisoformat(text + tz)
    return dt.astimezone(timezone.utc)


class _Checker:
    """Collects the path of the field being checked so errors name it (``tenants[2].faults.x``)."""

    def fail(self, where: str, msg: str) -> None:
        raise ValueError(f"scenario: {where}: {msg}")

    def typ(self, where: str, value: Any, kind: type | tuple[type, ...], what: str) -> None:
        # bool is an int subclass; never accept True where a number is wanted.
        if isinstance(value, bool) and kind in (int, float, (int, float)):
            self.fail(where, f"must be {what}, got {value!r}")
        if not isinstance(value, kind):
            self.fail(where, f"must be {what}, got {type(value).__name__} {_short(value)}")

    def keys(self, where: str, obj: dict[str, Any], allowed: set[str], extensible: bool = False) -> None:
        """Reject unknown keys. ``extensible`` objects (top level, tenant) may carry the caller's own
        metadata (e.g. a demo's ``"story"``), but a key that looks like a typo of a known field
        (``licenced``) is still an error, since it would otherwise silently serve the default."""
        for key in obj:
            if key.startswith("_") or key == "$schema" or key in allowed:
                continue  # "_..." keys are comments
            name = f"{where}.{key}" if where else key
            if not extensible:
                self.fail(name, f"unknown field (allowed: {', '.join(sorted(allowed))})")
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.75) or [
                a for a in allowed if a.lower() == key.lower()]
            if close:
                self.fail(name, f"unknown field; did you mean '{close[0]}'?")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


APP_KEYS = {"clientId", "clientSecret", "certificates", "federatedCredentials"}
FEDERATED_KEYS = {"name", "issuer", "subject", "audience", "audiences", "description"}
#: The audience of a token-exchange assertion (what Entra's federated identity credentials use by default).
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


def _check_app(c: _Checker, where: str, app: Any) -> dict[str, Any]:
    """Validate an app and return a normalised copy: ``certificates`` (PEM strings) and ``federatedCredentials``
    (each with an ``audiences`` list) always present; ``clientSecret`` optional when the app has either."""
    c.typ(where, app, dict, "an object {clientId, clientSecret, certificates, federatedCredentials}")
    c.keys(where, app, APP_KEYS)
    out = copy.deepcopy(app)
    val = app.get("clientId")
    if not isinstance(val, str) or not val.strip():
        c.fail(f"{where}.clientId", "required non-empty string")
    certificates = out.setdefault("certificates", [])
    c.typ(f"{where}.certificates", certificates, list, "a list of PEM certificates")
    for i, pem in enumerate(certificates):
        c.typ(f"{where}.certificates[{i}]", pem, str, "a PEM certificate (-----BEGIN CERTIFICATE-----)")
        try:
            certificate_keys(pem)
        except ValueError as exc:
            c.fail(f"{where}.certificates[{i}]", str(exc))
    federated = out.setdefault("federatedCredentials", [])
    c.typ(f"{where}.federatedCredentials", federated, list, "a list of {issuer, subject, audience}")
    for i, fic in enumerate(federated):
        at = f"{where}.federatedCredentials[{i}]"
        c.typ(at, fic, dict, "an object {issuer, subject, audience}")
        c.keys(at, fic, FEDERATED_KEYS)
        for field in ("issuer", "subject"):
            if not isinstance(fic.get(field), str) or not fic[field].strip():
                c.fail(f"{at}.{field}", "required non-empty string")
        audiences = fic.pop("audiences", None)
        if "audience" in fic:
            audiences = [*(audiences or []), fic.pop("audience")]
        audiences = [EXCHANGE_AUDIENCE] if audiences is None else audiences
        c.typ(f"{at}.audiences", audiences, list, "a list of strings")
        if not audiences or not all(isinstance(a, str) and a for a in audiences):
            c.fail(f"{at}.audience", "must be a non-empty string (default api://AzureADTokenExchange)")
        fic["audiences"] = audiences
    if "clientSecret" in out or not (certificates or federated):
        val = out.get("clientSecret")
        if not isinstance(val, str) or not val.strip():
            c.fail(f"{where}.clientSecret", "required non-empty string (unless the app has certificates or "
                                             "federatedCredentials)")
    return out


@functools.lru_cache(maxsize=256)
def certificate_keys(pem: str) -> tuple[bytes, bytes, Any, datetime, datetime]:
    """(SHA-1 thumbprint, SHA-256 thumbprint, RSA public key, not before, not after) of a PEM certificate."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        certs = x509.load_pem_x509_certificates(pem.encode("utf-8"))
    except ValueError:
        raise ValueError("not a PEM certificate (-----BEGIN CERTIFICATE-----)") from None
    if len(certs) != 1:
        raise ValueError(f"expected exactly one certificate, got {len(certs)}")
    cert = certs[0]
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the certificate's key must be RSA (client assertions are RS256/PS256)")
    return (cert.fingerprint(hashes.SHA1()), cert.fingerprint(hashes.SHA256()), key,  # noqa: S303 - x5t is SHA-1
            cert.not_valid_before_utc, cert.not_valid_after_utc)


def is_endpoint_key(key: str) -> bool:
    if key in ENDPOINT_KEYS:
        return True
    return key.startswith("exchange.") and len(key) > len("exchange.")


def _check_fault(c: _Checker, where: str, fault: Any) -> None:
    c.typ(where, fault, dict, "an object {status, times, body, rawBody, retryAfter, delay, skip}")
    c.keys(where, fault, FAULT_KEYS)
    if "status" in fault:
        c.typ(f"{where}.status", fault["status"], int, "an HTTP status code")
        if not 100 <= fault["status"] <= 599:
            c.fail(f"{where}.status", f"must be 100..599, got {fault['status']}")
    elif "delay" not in fault:
        c.fail(f"{where}.status", "required (unless the fault is only a 'delay')")
    if "times" in fault and fault["times"] is not None:
        c.typ(f"{where}.times", fault["times"], int, "a positive integer")
        if fault["times"] < 1:
            c.fail(f"{where}.times", "must be >= 1 (omit it for a permanent fault)")
    if "skip" in fault:
        c.typ(f"{where}.skip", fault["skip"], int, "a positive integer")
        if fault["skip"] < 1:
            c.fail(f"{where}.skip", "must be >= 1 (omit it to fault the very next request)")
    if "rawBody" in fault:
        c.typ(f"{where}.rawBody", fault["rawBody"], str, "a string (sent as it is, e.g. truncated JSON)")
        if "body" in fault:
            c.fail(f"{where}.rawBody", "give either 'body' (JSON) or 'rawBody' (text), not both")
        if "status" not in fault:
            c.fail(f"{where}.status", "required with 'rawBody'")
    if "method" in fault and fault["method"] not in FAULT_METHODS:
        c.fail(f"{where}.method", f"one of {', '.join(FAULT_METHODS)} (the fault then hits only that method)")
    for field in ("retryAfter", "delay"):
        if field in fault:
            c.typ(f"{where}.{field}", fault[field], (int, float), "a number of seconds")
            if fault[field] < 0:
                c.fail(f"{where}.{field}", "must be >= 0")


def normalize_tenant(tenant: Any, where: str = "tenant") -> dict[str, Any]:
    """Validate one tenant and return a deep copy with every default filled in."""
    c = _Checker()
    c.typ(where, tenant, dict, "an object")
    c.keys(where, tenant, TENANT_KEYS, extensible=True)
    t = copy.deepcopy(tenant)
    tid = t.get("tenantId")
    if not isinstance(tid, str) or not GUID_RE.match(tid):
        c.fail(f"{where}.tenantId", f"required GUID, got {_short(tid)}")
    t["tenantId"] = tid.lower()
    if "displayName" in t and t["displayName"] is not None:
        c.typ(f"{where}.displayName", t["displayName"], str, "a string")
    if "app" in t and t["app"] is not None:
        t["app"] = _check_app(c, f"{where}.app", t["app"])
    for flag in ("exchangeRole", "licensed"):
        t.setdefault(flag, True)
        c.typ(f"{where}.{flag}", t[flag], bool, "true or false")
    t.setdefault("consent", True)
    if not (isinstance(t["consent"], bool) or t["consent"] in CONSENT_STATES):
        c.fail(f"{where}.consent", f"true, false or \"revoked\", got {_short(t['consent'])}")
    perms = t.setdefault("permissions", list(DEFAULT_PERMISSIONS))
    c.typ(f"{where}.permissions", perms, list, "a list of app role names")
    for i, p in enumerate(perms):
        c.typ(f"{where}.permissions[{i}]", p, str, "a string")
    senders = t.setdefault("mailSenders", [])
    c.typ(f"{where}.mailSenders", senders, list, "a list of mailbox addresses")
    for i, address in enumerate(senders):
        c.typ(f"{where}.mailSenders[{i}]", address, str, "a mailbox address")

    for section, items, default in (("graph", GRAPH_ITEMS, default_graph),
                                    ("exchange", EXCHANGE_ITEMS, default_exchange)):
        sec = t.setdefault(section, {})
        c.typ(f"{where}.{section}", sec, dict, "an object")
        c.keys(f"{where}.{section}", sec, set(items))
        for item, kind in items.items():
            if sec.get(item) is None:
                sec[item] = default(t, item)
            val = sec[item]
            c.typ(f"{where}.{section}.{item}", val, kind, "an object" if kind is dict else "a list of objects")
            if kind is list:
                for i, rec in enumerate(val):
                    c.typ(f"{where}.{section}.{item}[{i}]", rec, dict, "an object")

    for i, rec in enumerate(t["graph"]["signIns"]):
        _check_date(c, f"{where}.graph.signIns[{i}].createdDateTime", rec.get("createdDateTime"))
    for i, rec in enumerate(t["graph"]["directoryAudits"]):
        _check_date(c, f"{where}.graph.directoryAudits[{i}].activityDateTime", rec.get("activityDateTime"))

    _check_audit(c, where, t)
    _check_onboarding(c, where, t)
    faults = t.setdefault("faults", {})
    c.typ(f"{where}.faults", faults, dict, "an object keyed by endpoint key")
    for key, fault in faults.items():
        if not is_endpoint_key(key):
            c.fail(f"{where}.faults.{key}",
                   f"unknown endpoint key (use one of {', '.join(ENDPOINT_KEYS)} or exchange.<CmdletName>)")
        _check_fault(c, f"{where}.faults.{key}", fault)
    return t


def _check_onboarding(c: _Checker, where: str, t: dict[str, Any]) -> None:
    """What GDAP-delegated onboarding leaves in a customer tenant (simulator/partner_center.py, customer_graph.py):
    `delegatedGrants` {resource appId: [delegated scope, ...]} (tenant-wide grants of the app's service principal) and
    `directoryRoles` [role template id, ...] (directory roles assigned to it)."""
    grants = t.setdefault("delegatedGrants", {})
    c.typ(f"{where}.delegatedGrants", grants, dict, "an object {resource appId: [scope, ...]}")
    for resource, scopes in grants.items():
        c.typ(f"{where}.delegatedGrants.{resource}", scopes, list, "a list of delegated scope names")
        for i, scope in enumerate(scopes):
            c.typ(f"{where}.delegatedGrants.{resource}[{i}]", scope, str, "a scope name")
    roles = t.setdefault("directoryRoles", [])
    c.typ(f"{where}.directoryRoles", roles, list, "a list of role template ids")
    for i, role in enumerate(roles):
        if not isinstance(role, str) or not GUID_RE.match(role):
            c.fail(f"{where}.directoryRoles[{i}]", f"required role template GUID, got {_short(role)}")


AUDIT_QUERY_DEFAULTS = {"now": None, "polls": 1, "outcome": "succeeded", "recordLimit": None}
AUDIT_OUTCOMES = ("succeeded", "failed", "cancelled")


def _check_audit(c: _Checker, where: str, t: dict[str, Any]) -> None:
    """`auditRecords`: Graph auditLogRecord objects (+ `availableAfterMinutes`, default 0) the audit log query API
    serves; `auditQuery`: the tenant's clock for queries (`now`, null = real time), the polls until a query ends
    (`polls` >= 1), how it ends (`outcome`) and its record-count limit (`recordLimit`, null = none)."""
    records = t.setdefault("auditRecords", [])
    c.typ(f"{where}.auditRecords", records, list, "a list of auditLogRecord objects")
    for i, rec in enumerate(records):
        at = f"{where}.auditRecords[{i}]"
        c.typ(at, rec, dict, "an auditLogRecord object")
        _check_date(c, f"{at}.createdDateTime", rec.get("createdDateTime"))
        for name in ("operation", "auditLogRecordType"):
            if not isinstance(rec.get(name), str) or not rec[name]:
                c.fail(f"{at}.{name}", "required non-empty string")
        minutes = rec.setdefault("availableAfterMinutes", 0)
        c.typ(f"{at}.availableAfterMinutes", minutes, (int, float), "a number of minutes")
        if minutes < 0:
            c.fail(f"{at}.availableAfterMinutes", "must be >= 0")
        # A stable id (what the record is and where): the same scenario serves the same ids.
        rec.setdefault("id", str(uuid.uuid5(uuid.NAMESPACE_URL, f"{t['tenantId']}/{i}/{rec['createdDateTime']}/"
                                                                 f"{rec['operation']}")))
    query = t.setdefault("auditQuery", {})
    c.typ(f"{where}.auditQuery", query, dict, "an object {now, polls, outcome, recordLimit}")
    c.keys(f"{where}.auditQuery", query, set(AUDIT_QUERY_DEFAULTS))
    for key, value in AUDIT_QUERY_DEFAULTS.items():
        query.setdefault(key, value)
    if query["now"] is not None:
        _check_date(c, f"{where}.auditQuery.now", query["now"])
    for key in ("polls", "recordLimit"):
        if query[key] is not None or key == "polls":
            c.typ(f"{where}.auditQuery.{key}", query[key], int, "a positive integer")
            if query[key] < 1:
                c.fail(f"{where}.auditQuery.{key}", "must be >= 1")
    if query["outcome"] not in AUDIT_OUTCOMES:
        c.fail(f"{where}.auditQuery.outcome", f"one of {', '.join(AUDIT_OUTCOMES)}, got {_short(query['outcome'])}")


def _check_date(c: _Checker, where: str, value: Any) -> None:
    try:
        parse_datetime(value)
    except ValueError as exc:
        c.fail(where, f"required ISO 8601 date-time ({exc})")


def load_scenario(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Validate a scenario (dict, or path of a JSON file) and return a normalised deep copy.

    Raises ValueError naming the offending field, e.g. ``scenario: tenants[1].tenantId: required GUID``.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"scenario: cannot read {path}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise ValueError(f"scenario: {path} is not valid JSON: {exc}") from exc
    else:
        raw = source
    c = _Checker()
    c.typ("(top level)", raw, dict, "a JSON object")
    c.keys("", raw, TOP_KEYS, extensible=True)
    sc: dict[str, Any] = {}
    if raw.get("app") is not None:
        sc["app"] = _check_app(c, "app", raw["app"])
    else:
        sc["app"] = None

    page = dict(DEFAULT_PAGE_SIZE)
    if raw.get("pageSize") is not None:
        c.typ("pageSize", raw["pageSize"], dict, "an object {graph, exchange}")
        c.keys("pageSize", raw["pageSize"], set(DEFAULT_PAGE_SIZE))
        for k, v in raw["pageSize"].items():
            if k.startswith("_"):
                continue
            c.typ(f"pageSize.{k}", v, int, "a positive integer")
            if v < 1:
                c.fail(f"pageSize.{k}", "must be >= 1")
            page[k] = v
    sc["pageSize"] = page

    lifetime = raw.get("tokenLifetime", DEFAULT_TOKEN_LIFETIME)
    c.typ("tokenLifetime", lifetime, int, "a number of seconds")
    if lifetime < 1:
        c.fail("tokenLifetime", "must be >= 1")
    sc["tokenLifetime"] = lifetime

    sc["limits"] = normalize_limits(raw.get("limits"), c.fail)
    latency = raw.get("latencyMs")
    if latency is None:
        # 50 ms only for scenarios that opt into realistic throttling; plain functional tests stay fast.
        latency = DEFAULT_LATENCY_WITH_LIMITS_MS if sc["limits"] is not None else 0
    c.typ("latencyMs", latency, (int, float), "a number of milliseconds")
    if latency < 0:
        c.fail("latencyMs", "must be >= 0")
    sc["latencyMs"] = latency

    tenants = raw.get("tenants", [])
    c.typ("tenants", tenants, list, "a list of tenant objects")
    seen: set[str] = set()
    sc["tenants"] = []
    for i, tenant in enumerate(tenants):
        t = normalize_tenant(tenant, f"tenants[{i}]")
        if t["tenantId"] in seen:
            c.fail(f"tenants[{i}].tenantId", f"duplicate tenant {t['tenantId']}")
        seen.add(t["tenantId"])
        if sc["app"] is None and not t.get("app"):
            c.fail(f"tenants[{i}].app", "required when the scenario has no top-level 'app'")
        sc["tenants"].append(t)
    sc["partner"] = normalize_partner(c, raw.get("partner"), sc["tenants"], sc["app"], _check_fault, _check_date)
    return sc


