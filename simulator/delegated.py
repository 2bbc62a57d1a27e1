"""Delegated sign-in of the MSP operator: the device code flow and refresh tokens, the way MSAL (sync azure-identity's
DeviceCodeCredential) drives them.

* ``POST /{tenant}/oauth2/v2.0/devicecode`` → ``{device_code, user_code, verification_uri, expires_in, interval,
  message}`` (RFC 8628 §3.2; https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-device-code).
* ``grant_type=urn:ietf:params:oauth:grant-type:device_code``: the scenario's ``partner.operator.signIn`` decides at
  the first poll: ``approve`` (tokens, no waiting), ``decline`` (``authorization_declined``) or ``expire``
  (``expired_token``) — the device code page's documented errors.
* ``grant_type=refresh_token`` for the partner tenant or a customer tenant (how MSAL reaches a customer with the same
  sign-in: ``get_token(scope, tenant_id=<customer>)`` redeems the cached refresh token there).

What MSAL needs to cache an account (read in msal 1.39 ``token_cache.py`` ``__add`` and azure-identity's
``_build_auth_record``): ``client_info`` (base64url JSON ``{uid, utid}`` → home_account_id), an ``id_token`` whose
claims carry ``oid``, ``preferred_username``, ``tid`` and ``iss`` (its host becomes the record's authority), a
``refresh_token``, ``access_token``, ``expires_in`` and ``scope``. Refresh tokens and device codes are self-contained
JWTs signed by the simulator (nothing stored), so they die with the simulator like its access tokens.
"""
from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

from .partner import active_relationships, is_partner_ref
from .state import SimResponse, SimState
from .tokens import TokenError, TokenIssuer, _oauth_error

GRANT_DEVICE_CODE = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_REFRESH = "refresh_token"
GRAPH_AUD = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
# Partner Center's audience and resource app id (research §4: MS sample scope .../user_impersonation; CIPP .default).
PARTNER_CENTER_AUD = "https://api.partnercenter.microsoft.com"
PARTNER_CENTER_APP_ID = "fa3d9a0c-3fb0-42cc-9193-47c7ecd2edbd"
RESERVED = ("openid", "profile", "offline_access", "email")
VERIFICATION_URI = "https://microsoft.com/devicelogin"  # what Entra's device code response names
DEVICE_CODE_LIFETIME = 900  # "expires_in … 900" in the device code page's example
POLL_INTERVAL = 5
REFRESH_LIFETIME = 90 * 24 * 3600  # Entra refresh tokens: 90 days (configurable-token-lifetimes)
_RESOURCES = {GRAPH_AUD: GRAPH_AUD, GRAPH_APP_ID: GRAPH_AUD,
              PARTNER_CENTER_AUD: PARTNER_CENTER_AUD, PARTNER_CENTER_APP_ID: PARTNER_CENTER_AUD}
_NO_STORE = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}


def handles(form: dict[str, str]) -> bool:
    """True for the delegated grants this module serves (everything else is the client-credentials endpoint)."""
    return form.get("grant_type") in (GRANT_DEVICE_CODE, GRANT_REFRESH)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class _Ctx:
    """One request: the resolved tenant and an error builder in Entra's shape."""

    def __init__(self, state: SimState, tenant_ref: str, base_url: str, crid: str | None) -> None:
        self.base_url, self.crid = base_url, crid
        with state.lock:
            self.partner = state.scenario.get("partner")
            self.app = state.scenario.get("app")
            self.lifetime = state.scenario["tokenLifetime"]
            if is_partner_ref(self.partner, tenant_ref):
                self.kind, self.tenant = "partner", None
                self.tid: str | None = self.partner["tenantId"]  # type: ignore[index]
            else:
                self.tenant = state.tenant(tenant_ref)
                self.kind = "customer" if self.tenant is not None else "unknown"
                self.tid = self.tenant["tenantId"] if self.tenant is not None else None
            self.roles_active = bool(self.tenant and active_relationships(self.partner, self.tenant["tenantId"]))
        self.ref = tenant_ref

    def err(self, status: int, error: str, code: int, text: str) -> SimResponse:
        return _oauth_error(status, error, code, text, self.crid, self.base_url)

    def refusal(self, form: dict[str, str]) -> SimResponse | None:
        """Entra's answer when the operator may not sign in here with this app, else None."""
        if self.kind == "unknown":
            return self.err(400, "invalid_request", 90002,
                            f"Tenant '{self.ref[:64]}' not found. Check to make sure you have the correct tenant ID and "
                            "are signing into the correct cloud.")
        if self.partner is None:
            # No partner in the scenario: nobody can sign in interactively (AADSTS50034 UserAccountNotFound).
            return self.err(400, "invalid_grant", 50034, "The user account does not exist in the directory. "
                            "(The scenario has no 'partner' operator.)")
        client_id = form.get("client_id")
        if not client_id:
            return self.err(400, "invalid_request", 900144,
                            "The request body must contain the following parameter: 'client_id'.")
        if client_id.lower() != self.app["clientId"].lower():  # type: ignore[index]
            return self.err(400, "unauthorized_client", 700016,
                            f"Application with identifier '{client_id[:64]}' was not found in the directory "
                            f"'{self.tid}'.")
        if self.kind == "customer":
            upn, home = self.partner["operator"]["userPrincipalName"], self.partner["tenantId"]
            if not self.roles_active:
                # A partner user reaches a customer only through an active GDAP relationship; without one Entra
                # answers as for any foreign user (AADSTS50020, reference-error-codes: "User account '{email}' from
                # identity provider '{idp}' does not exist in tenant '{tenant}' and cannot access the application").
                # Status/error pairing as observed for refresh-token redemption (invalid_grant).
                name = self.tenant.get("displayName") or self.tid  # type: ignore[union-attr]
                return self.err(400, "invalid_grant", 50020,
                                f"User account '{upn}' from identity provider 'https://sts.windows.net/{home}/' does "
                                f"not exist in tenant '{name}' and cannot access the application "
                                f"'{client_id}'(authwatch) in that tenant. The account needs to be added as an "
                                "external user in the tenant first.")
            if self.tenant["consent"] is False:  # type: ignore[index]
                # No service principal of the app in the customer: AADSTS65001 ConsentRequired (reference-error-codes).
                return self.err(400, "invalid_grant", 65001,
                                f"The user or administrator has not consented to use the application with ID "
                                f"'{client_id}' named 'authwatch'. Send an interactive authorization request for this "
                                "user and resource.")
        return None

    def resolve_scope(self, scope: str) -> tuple[str, list[str], list[str]] | SimResponse:
        """(audience, scopes granted in the token, reserved scopes asked for) or Entra's error."""
        words = scope.split()
        reserved = [w for w in words if w in RESERVED]
        audiences, names = set(), []
        for word in (w for w in words if w not in RESERVED):
            resource, _, name = word.rpartition("/")
            if not resource:
                resource = GRAPH_AUD  # a bare scope name ("User.Read") is a Microsoft Graph scope
            aud = _RESOURCES.get(resource.lower().rstrip("/"))
            if aud is None or not name:
                audiences.add(None)
                break
            audiences.add(aud)
            names.append(name)
        if len(audiences) != 1 or None in audiences:
            return self.err(400, "invalid_scope", 70011,
                            f"The provided value for the input parameter 'scope' is not valid. The scope "
                            f"{scope[:200] or '(empty)'} is not valid: name exactly one resource (Microsoft Graph or "
                            "https://api.partnercenter.microsoft.com).")
        aud = audiences.pop()
        if aud == PARTNER_CENTER_AUD:
            if self.kind != "partner":
                # AADSTS500011 InvalidResourceServicePrincipalNotFound: the resource has no SP in that tenant.
                return self.err(400, "invalid_resource", 500011,
                                f"The resource principal named {PARTNER_CENTER_AUD} was not found in the tenant "
                                f"named {self.tid}. This can happen if the application has not been installed by the "
                                "administrator of the tenant or consented to by any user in the tenant.")
            consented = ["user_impersonation"]
        elif self.kind == "partner":
            consented = list(self.partner["delegatedScopes"])  # type: ignore[index]
        else:
            consented = list(self.tenant["delegatedGrants"].get(GRAPH_APP_ID, []))  # type: ignore[index]
        missing = [n for n in names if n != ".default" and n.lower() not in {c.lower() for c in consented}]
        if missing or not consented:
            return self.err(400, "invalid_grant", 65001,
                            f"The user or administrator has not consented to use the application with ID "
                            f"'{self.app['clientId']}' named 'authwatch'. Send an interactive authorization request "  # type: ignore[index]
                            f"for this user and resource. (Not consented: {' '.join(missing) or aud})")
        return aud, consented, reserved


def device_code(state: SimState, issuer: TokenIssuer, tenant_ref: str, form: dict[str, str], base_url: str,
                crid: str | None) -> tuple[str | None, SimResponse]:
    """``POST /{tenant}/oauth2/v2.0/devicecode``."""
    ctx = _Ctx(state, tenant_ref, base_url, crid)
    refused = ctx.refusal(form)
    if refused is not None:
        return ctx.tid, refused
    resolved = ctx.resolve_scope(form.get("scope") or "")
    if isinstance(resolved, SimResponse):
        return ctx.tid, resolved
    now = int(time.time())
    user_code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
    code = issuer.sign({"typ": "device_code", "aud": "urn:simulator:device_code", "tid": ctx.tid,
                        "client_id": form["client_id"].lower(), "scope": form.get("scope") or "",
                        "exp": now + DEVICE_CODE_LIFETIME, "nonce": _b64(secrets.token_bytes(8))})
    body = {"user_code": user_code, "device_code": code, "verification_uri": VERIFICATION_URI,
            "expires_in": DEVICE_CODE_LIFETIME, "interval": POLL_INTERVAL,
            "message": f"To sign in, use a web browser to open the page {VERIFICATION_URI} and enter the code "
                       f"{user_code} to authenticate."}
    return ctx.tid, SimResponse(200, body, dict(_NO_STORE))


def token(state: SimState, issuer: TokenIssuer, tenant_ref: str, form: dict[str, str], base_url: str,
          crid: str | None) -> tuple[str | None, SimResponse]:
    """``POST /{tenant}/oauth2/v2.0/token`` with a device code or a refresh token."""
    ctx = _Ctx(state, tenant_ref, base_url, crid)
    refused = ctx.refusal(form)
    if refused is not None:
        return ctx.tid, refused
    now = time.time()
    if form["grant_type"] == GRANT_DEVICE_CODE:
        claims = _redeem(issuer, form.get("device_code"), "device_code")
        if claims is None or claims.get("tid") != ctx.tid or claims.get("client_id") != form["client_id"].lower():
            return ctx.tid, ctx.err(400, "bad_verification_code", 70018,
                                    "The device_code sent to the /token endpoint wasn't recognized.")
        outcome = ctx.partner["operator"]["signIn"]  # type: ignore[index]
        if outcome == "expire" or claims.get("exp", 0) <= now:
            # expired_token: "Value of expires_in has been exceeded and authentication is no longer possible with
            # device_code." (AADSTS70019 CodeExpired, reference-error-codes)
            return ctx.tid, ctx.err(400, "expired_token", 70019,
                                    "Verification code expired. Have the user retry the sign-in.")
        if outcome == "decline":
            # authorization_declined: "The end user denied the authorization request." The AADSTS number is the
            # simulator's choice (the page documents the error, not a code).
            return ctx.tid, ctx.err(400, "authorization_declined", 70000,
                                    "The end user denied the authorization request.")
        scope = form.get("scope") or claims.get("scope", "")
    else:
        if not form.get("refresh_token"):
            return ctx.tid, ctx.err(400, "invalid_request", 900144,
                                    "The request body must contain the following parameter: 'refresh_token'.")
        claims = _redeem(issuer, form["refresh_token"], "refresh")
        operator = ctx.partner["operator"]  # type: ignore[index]
        if claims is None or claims.get("client_id") != form["client_id"].lower() or \
                claims.get("home") != ctx.partner["tenantId"] or claims.get("oid") != operator["objectId"]:  # type: ignore[index]
            return ctx.tid, ctx.err(400, "invalid_grant", 9002313, "Invalid request. Request is malformed or invalid.")
        if claims.get("exp", 0) <= now:
            return ctx.tid, ctx.err(400, "invalid_grant", 700082,
                                    "The refresh token has expired due to inactivity.")
        scope = form.get("scope") or ""
    resolved = ctx.resolve_scope(scope)
    if isinstance(resolved, SimResponse):
        return ctx.tid, resolved
    aud, granted, reserved = resolved
    return ctx.tid, SimResponse(200, _tokens(ctx, issuer, aud, granted, reserved, form), dict(_NO_STORE))


def _redeem(issuer: TokenIssuer, value: str | None, typ: str) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        claims = issuer.verify_signed(value)
    except TokenError:
        return None
    return claims if claims.get("typ") == typ else None


def _tokens(ctx: _Ctx, issuer: TokenIssuer, aud: str, granted: list[str], reserved: list[str],
            form: dict[str, str]) -> dict[str, Any]:
    """The v2.0 token response for the operator in ``ctx.tid`` (access token v1 claims, as Graph's tokens are)."""
    partner = ctx.partner
    op, home, tid = partner["operator"], partner["tenantId"], ctx.tid  # type: ignore[index]
    client_id = ctx.app["clientId"]  # type: ignore[index]
    now = int(time.time())
    claims: dict[str, Any] = {
        "aud": aud, "iss": f"https://sts.windows.net/{tid}/", "iat": now, "nbf": now, "exp": now + ctx.lifetime,
        "acr": "1", "amr": ["pwd", "mfa"],  # Partner Center wants MFA-backed App+User tokens (enable-secure-app-model)
        "appid": client_id, "appidacr": "0", "idtyp": "user", "name": op["displayName"], "oid": op["objectId"],
        "scp": " ".join(granted), "sub": op["objectId"], "tid": tid, "unique_name": op["userPrincipalName"],
        "upn": op["userPrincipalName"], "uti": _b64(secrets.token_bytes(12)), "ver": "1.0",
    }
    if tid != home:
        claims["idp"] = f"https://sts.windows.net/{home}/"  # a foreign (GDAP) principal in the customer tenant
    shown = granted if aud == GRAPH_AUD else [f"{aud}/{s}" for s in granted]
    body: dict[str, Any] = {"token_type": "Bearer", "scope": " ".join([*shown, *reserved]),
                            "expires_in": ctx.lifetime, "ext_expires_in": ctx.lifetime,
                            "access_token": issuer.sign(claims)}
    if "offline_access" in reserved or form["grant_type"] == GRANT_REFRESH:
        body["refresh_token"] = issuer.sign({"typ": "refresh", "aud": "urn:simulator:refresh_token",
                                             "client_id": client_id.lower(), "home": home, "oid": op["objectId"],
                                             "iat": now, "exp": now + REFRESH_LIFETIME,
                                             "nonce": _b64(secrets.token_bytes(8))})
    if "openid" in reserved:
        body["id_token"] = issuer.sign({
            "aud": client_id, "iss": f"{ctx.base_url}/{tid}/v2.0", "iat": now, "nbf": now, "exp": now + ctx.lifetime,
            "name": op["displayName"], "oid": op["objectId"], "preferred_username": op["userPrincipalName"],
            "sub": _b64(f"{op['objectId']}:{client_id}".encode())[:43], "tid": tid, "ver": "2.0"})
    if form.get("client_info"):
        # "client_info=1" asks for it; MSAL builds the account key "{uid}.{utid}" from it (home tenant = partner).
        body["client_info"] = _b64(json.dumps({"uid": op["objectId"], "utid": home}).encode())
    return body
