"""Exchange Online admin API: ``POST /adminapi/beta/{tenant}/InvokeCommand`` for the Get-* cmdlets.

Mirrors what the ExchangeOnlineManagement v3 module (and CIPP) see: ``{"value": [...]}`` of
GenericHashTables, ``?$select=`` projection, ``Prefer: odata.maxpagesize`` paging with an absolute
``@odata.nextLink`` that the client POSTs the *same body* to, bare 403s for an app without an
Entra role, and PowerShell-style error details.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from .odata import ODataError, decode_skiptoken, encode_skiptoken
from .opath import FilterError, compile_filter
from .state import Fault, SimResponse, SimState
from .tokens import EXCHANGE_AUD, TokenError, TokenIssuer

JSON = "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
MAX_PAGE = 1000
DEFAULT_RESULT_SIZE = 1000  # Get-CASMailbox / Get-User return 1000 objects unless -ResultSize is given
COMMON_PARAMS = {"erroraction", "warningaction", "informationaction", "verbose", "debug"}
IDENTITY_FIELDS = ("Identity", "Name", "PrimarySmtpAddress", "UserPrincipalName", "ExternalDirectoryObjectId",
                   "Guid", "Alias", "DistinguishedName", "WindowsEmailAddress")


@dataclass(frozen=True)
class Cmdlet:
    name: str
    item: str  # key under the tenant's "exchange" section
    params: frozenset[str]  # lower-case parameter names accepted (besides the common ones)
    filterable: frozenset[str]  # documented filterable properties (data keys are added at run time)
    limited: bool  # applies the 1000-object default ResultSize


_MAILBOX_PROPS = frozenset({
    "Identity", "Name", "DisplayName", "Alias", "Guid", "PrimarySmtpAddress", "ExternalDirectoryObjectId",
    "SmtpClientAuthenticationDisabled", "PopEnabled", "ImapEnabled", "ActiveSyncEnabled", "MAPIEnabled",
    "EwsEnabled", "OWAEnabled"})
CMDLETS: dict[str, Cmdlet] = {c.name.lower(): c for c in (
    Cmdlet("Get-OrganizationConfig", "organizationConfig", frozenset(), frozenset(), False),
    Cmdlet("Get-TransportConfig", "transportConfig", frozenset(), frozenset(), False),
    Cmdlet("Get-AuthenticationPolicy", "authenticationPolicies", frozenset({"identity"}), frozenset(), False),
    Cmdlet("Get-CASMailbox", "casMailboxes", frozenset({"identity", "filter", "resultsize"}), _MAILBOX_PROPS, True),
    Cmdlet("Get-CASMailboxPlan", "casMailboxPlans", frozenset({"identity", "filter", "resultsize"}),
           frozenset({"Identity", "Name", "DisplayName", "ActiveSyncEnabled", "ImapEnabled", "PopEnabled",
                      "OwaMailboxPolicy"}), False),
    # STSRefreshTokensValidFrom: when Set-User -STSRefreshTokensValidFrom last revoked the user's refresh tokens
    # (https://learn.microsoft.com/en-us/powershell/module/exchangepowershell/set-user); served as the scenario gives it.
    Cmdlet("Get-User", "users", frozenset({"identity", "filter", "resultsize"}),
           frozenset({"Identity", "Name", "DisplayName", "UserPrincipalName", "AuthenticationPolicy",
                      "ExternalDirectoryObjectId", "RecipientTypeDetails", "STSRefreshTokensValidFrom"}), True),
)}


class CmdletError(Exception):
    def __init__(self, status: int, code: str, message: str, detail: str, exc_type: str) -> None:
        super().__init__(message)
        self.response = exo_error(status, code, message, detail, exc_type)


def exo_error(status: int, code: str, message: str, detail: str | None = None,
              exc_type: str = "System.Management.Automation.RemoteException") -> SimResponse:
    err: dict[str, Any] = {"code": code, "message": message}
    if detail is not None:
        err["details"] = [{"code": "Context", "message": detail, "target": ""}]
        err["innererror"] = {"message": detail, "type": exc_type, "internalException": {"message": detail}}
    return SimResponse(status, {"error": err}, {"Content-Type": "application/json; charset=utf-8"})


def _unauthorized(message: str) -> SimResponse:
    resp = exo_error(401, "InvalidAuthenticationToken", message)
    resp.headers["WWW-Authenticate"] = 'Bearer client_id="00000002-0000-0ff1-ce00-000000000000", error="invalid_token"'
    return resp


def cmdlet_key(body: Any) -> str:
    """Endpoint key for a request body: ``exchange.<canonical cmdlet name>`` (``exchange.unknown`` if unreadable)."""
    try:
        name = body["CmdletInput"]["CmdletName"]
    except (TypeError, KeyError):
        return "exchange.unknown"
    if not isinstance(name, str) or not name.strip():
        return "exchange.unknown"
    known = CMDLETS.get(name.strip().lower())
    return f"exchange.{known.name if known else name.strip()}"


def _page_size(prefer: str | None, default: int) -> tuple[int, bool]:
    m = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", prefer or "", re.IGNORECASE)
    if not m or int(m.group(1)) < 1:
        return min(default, MAX_PAGE), False
    # Prefer is a maximum: the server may still page smaller (the scenario's page size plays the server's limit).
    return min(int(m.group(1)), default, MAX_PAGE), True


def _select(obj: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    if not fields:
        return obj
    by_lower = {k.lower(): k for k in obj}
    # Cmdlet objects always carry every property, so a selected-but-absent one is served as null.
    return {by_lower.get(f.lower(), f): obj.get(by_lower.get(f.lower(), f)) for f in fields}


@dataclass
class ExoRequest:
    tenant_ref: str  # as written in the path
    authorization: str | None
    body: Any  # parsed JSON or None when unreadable
    query: dict[str, str]
    prefer: str | None


async def invoke_command(state: SimState, issuer: TokenIssuer, base_url: str,
                         req: ExoRequest) -> tuple[str, str | None, SimResponse]:
    """Serve InvokeCommand; returns (endpoint key, tenant id, response)."""
    key = cmdlet_key(req.body)
    with state.lock:
        tenant = state.tenant(req.tenant_ref)
        tid = tenant["tenantId"] if tenant else None
    try:
        claims = issuer.verify(req.authorization, EXCHANGE_AUD)
    except TokenError as exc:
        return key, tid, _unauthorized(str(exc))
    with state.lock:
        if tenant is None or claims.get("tid") != tid:
            return key, tid, _unauthorized("The token was issued for a different tenant than the one in the URL.")
        if tenant["consent"] is False:
            return key, tid, _unauthorized("The application no longer has a service principal in this tenant.")
        if "Exchange.ManageAsApp" not in state.granted(tenant):
            return key, tid, _unauthorized("The token does not carry the Exchange.ManageAsApp role.")
        exchange_role = tenant["exchangeRole"]

    throttled, retry_after = state.throttle("exchange", tid, claims.get("appid"))
    if throttled:
        resp = exo_error(429, "TooManyRequests", "The request was throttled. Please retry later.",
                         "The request was throttled. Please retry later.")
        if retry_after is not None:
            resp.headers["Retry-After"] = str(retry_after)
        resp.throttled = True
        return key, tid, resp
    fault = state.take_fault(tid, key)
    if fault is not None:
        if fault.delay:
            await asyncio.sleep(fault.delay)
        if fault.status is not None:
            return key, tid, _fault_response(fault)
    if not exchange_role:
        # The app role alone is not enough: Exchange answers a bare 403 (no body at all).
        return key, tid, SimResponse(403, None, {})
    try:
        return key, tid, _run(state, base_url, tid, req)
    except CmdletError as exc:
        return key, tid, exc.response
    except (ODataError, FilterError) as exc:
        return key, tid, exo_error(400, "BadRequest", str(exc), str(exc))


def _fault_response(fault: Fault) -> SimResponse:
    if fault.raw_body is not None:
        resp = SimResponse(fault.status or 500, None, {"Content-Type": "application/json"},
                           raw=fault.raw_body.encode())
    elif fault.has_body:
        resp = SimResponse(fault.status or 500, fault.body, {"Content-Type": "application/json"})
    else:
        status = fault.status or 500
        code, msg = {429: ("TooManyRequests", "The request was throttled. Please retry later."),
                     503: ("ServiceUnavailable", "The service is temporarily unavailable."),
                     }.get(status, ("InternalServerError" if status >= 500 else "BadRequest",
                                    f"Injected fault {status}."))
        resp = exo_error(status, code, msg, msg)
    if fault.retry_after is not None:
        ra = fault.retry_after
        resp.headers["Retry-After"] = str(int(ra) if float(ra).is_integer() else ra)
    return resp


def _run(state: SimState, base_url: str, tid: str, req: ExoRequest) -> SimResponse:
    body = req.body
    cin = body.get("CmdletInput") if isinstance(body, dict) else None
    if not isinstance(cin, dict) or not isinstance(cin.get("CmdletName"), str):
        raise CmdletError(400, "BadRequest", "The request body must be {\"CmdletInput\": {\"CmdletName\": ...}}.",
                          "Missing CmdletInput.CmdletName.", "System.ArgumentException")
    name = cin["CmdletName"].strip()
    params = cin.get("Parameters") or {}
    if not isinstance(params, dict):
        raise CmdletError(400, "BadRequest", "CmdletInput.Parameters must be an object.",
                          "CmdletInput.Parameters must be an object.", "System.ArgumentException")
    cmd = CMDLETS.get(name.lower())
    if cmd is None:
        text = (f"The term '{name}' is not recognized as a name of a cmdlet, function, script file, or executable "
                "program. Check the spelling of the name, or if a path was included, verify that the path is "
                "correct and try again.")
        raise CmdletError(400, "BadRequest", "Error executing cmdlet", text,
                          "System.Management.Automation.CommandNotFoundException")
    for p in params:
        if p.startswith("@odata.") or p.lower() in COMMON_PARAMS:
            continue
        if p.lower() not in cmd.params:
            text = f"A parameter cannot be found that matches parameter name '{p}'."
            raise CmdletError(400, "BadRequest", "Error executing cmdlet", text,
                              "System.Management.Automation.ParameterBindingException")
    plow = {k.lower(): v for k, v in params.items()}

    with state.lock:
        # Served read-only (stored tenants are copy-on-write): filtering and paging build new lists.
        data = state.tenant(tid)["exchange"][cmd.item]
        default_page = state.scenario["pageSize"]["exchange"]
    rows: list[dict[str, Any]] = data if isinstance(data, list) else [data]
    warnings: list[str] = []

    if "identity" in plow:
        ident = str(plow["identity"]).lower()
        rows = [r for r in rows if any(str(r.get(f, "")).lower() == ident for f in IDENTITY_FIELDS if r.get(f))]
        if not rows:
            text = f"The operation couldn't be performed because object '{plow['identity']}' couldn't be found."
            raise CmdletError(404, "NotFound", "Error executing cmdlet", text,
                              "Microsoft.Exchange.Configuration.Tasks.ManagementObjectNotFoundException")
    if plow.get("filter") not in (None, ""):
        if not isinstance(plow["filter"], str):
            raise FilterError("The Filter parameter must be a string.")
        known = set(cmd.filterable) | {k for r in rows for k in r}
        try:
            pred = compile_filter(plow["filter"], known)
        except FilterError as exc:
            text = f"Cannot bind parameter 'Filter' to the target. Exception setting \"Filter\": \"{exc}\""
            raise CmdletError(400, "BadRequest", "Error executing cmdlet", text,
                              "System.Management.Automation.ParameterBindingException") from None
        rows = [r for r in rows if pred(r)]
    limit = _result_size(plow.get("resultsize"), cmd)
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        if "resultsize" not in plow:
            warnings.append(f"By default, only the first {limit} items are returned. Use the ResultSize parameter "
                            "to specify the number of items returned. To return all items, specify "
                            "\"-ResultSize Unlimited\".")

    fields = [f.strip() for f in req.query.get("$select", "").split(",") if f.strip()] or None
    size, preferred = _page_size(req.prefer, default_page)
    # The cursor is bound to tenant + cmdlet + parameters: POSTing a different body to a nextLink is a 400.
    scope = tid + ":" + hashlib.sha256(json.dumps([cmd.name, params], sort_keys=True, default=str)
                                        .encode()).hexdigest()[:16]
    offset = decode_skiptoken(req.query["$skiptoken"], scope) if "$skiptoken" in req.query else 0
    root = f"{base_url}/adminapi/beta/{req.tenant_ref}"
    out: dict[str, Any] = {"@odata.context": f"{root}/$metadata#Collection(Exchange.GenericHashTable)"}
    if offset + size < len(rows):
        rest = {k: v for k, v in req.query.items() if k != "$skiptoken"}
        rest["$skiptoken"] = encode_skiptoken(offset + size, scope)
        out["@odata.nextLink"] = f"{root}/InvokeCommand?{urlencode(rest, quote_via=quote, safe='$,')}"
    if warnings:
        out["@adminapi.warnings"] = warnings
    out["value"] = [_select(r, fields) for r in rows[offset: offset + size]]
    applied = [f"odata.maxpagesize={size}"] if preferred else []
    # OData serialises null-valued properties unless the client opts out with `Prefer: omit-values=nulls` (OData 4.01
    # Protocol §8.2.8.6; "Allows the OData service to omit null values",
    # https://learn.microsoft.com/en-us/powerquery-m/odataomitvalues-type). No Microsoft page says the Exchange admin
    # API deviates, so the simulator sends nulls and omits them only when asked.
    if re.search(r"omit-values\s*=\s*nulls", req.prefer or "", re.IGNORECASE):
        out["value"] = [{k: v for k, v in row.items() if v is not None} for row in out["value"]]
        applied.append("omit-values=nulls")
    headers = {"Content-Type": JSON}
    if applied:
        headers["Preference-Applied"] = ", ".join(applied)
    return SimResponse(200, out, headers)


def _result_size(value: Any, cmd: Cmdlet) -> int | None:
    if value is None:
        return DEFAULT_RESULT_SIZE if cmd.limited else None
    if isinstance(value, str) and value.strip().lower() == "unlimited":
        return None
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or isinstance(value, bool):
        text = f"Cannot bind parameter 'ResultSize'. Cannot convert value \"{value}\" to type Unlimited<UInt32>."
        raise CmdletError(400, "BadRequest", "Error executing cmdlet", text,
                          "System.Management.Automation.ParameterBindingException")
    return n
