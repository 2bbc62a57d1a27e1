"""Entra ID (v2.0 endpoint) client-credentials tokens: minting, verification and OAuth errors.

Tokens are real JWTs (HS256 with a key that lives only as long as the simulator) so clients that
peek at claims (``tid``, ``roles``, ``exp``) see realistic values, while only this simulator
instance can validate them.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from .state import SimResponse, SimState

GRAPH_AUD = "https://graph.microsoft.com"
EXCHANGE_AUD = "https://outlook.office365.com"
#: Accepted spellings of a resource in a ``/.default`` scope (URI or well-known appId).
RESOURCES = {
    "https://graph.microsoft.com": GRAPH_AUD,
    "00000003-0000-0000-c000-000000000000": GRAPH_AUD,
    "https://outlook.office365.com": EXCHANGE_AUD,
    "https://outlook.office.com": EXCHANGE_AUD,
    "00000002-0000-0ff1-ce00-000000000000": EXCHANGE_AUD,
}
# Scopes MSAL may add on its own; they do not name a resource.
RESERVED_SCOPES = {"openid", "profile", "offline_access"}
EXCHANGE_ROLES = {"Exchange.ManageAsApp"}
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_SKEW = 300  # seconds of clock skew Entra tolerates on exp/nbf


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenError(Exception):
    """A token failed validation; ``message`` mirrors what Graph says in InvalidAuthenticationToken."""


class TokenIssuer:
    def __init__(self) -> None:
        self._key = secrets.token_bytes(32)
        # token -> claims of tokens whose signature already verified (expiry and audience are still checked on
        # every use), so the hot path does not redo HMAC + JSON for each of a client's requests.
        self._verified: dict[str, dict[str, Any]] = {}

    def mint(self, tenant_id: str, app_id: str, aud: str, roles: list[str], lifetime: int) -> str:
        now = int(time.time())
        sp_oid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant_id}:{app_id}"))
        claims = {
            "aud": aud,
            "iss": f"https://sts.windows.net/{tenant_id}/",
            "iat": now, "nbf": now, "exp": now + lifetime,
            "appid": app_id, "appidacr": "1", "azp": app_id,
            "idp": f"https://sts.windows.net/{tenant_id}/",
            "idtyp": "app", "oid": sp_oid, "sub": sp_oid,
            "roles": roles, "tid": tenant_id,
            "uti": _b64(secrets.token_bytes(12)), "ver": "1.0",
        }
        return self.sign(claims)

    def sign(self, claims: dict[str, Any]) -> str:
        """A JWT over ``claims`` that only this simulator instance can verify (also refresh tokens and device codes,
        which the simulator keeps self-contained instead of storing them)."""
        header = {"typ": "JWT", "alg": "HS256"}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        sig = hmac.new(self._key, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(sig)}"

    def verify(self, authorization: str | None, aud: str) -> dict[str, Any]:
        """Return the claims of a valid Bearer token for ``aud`` or raise TokenError."""
        if not authorization:
            raise TokenError("Access token is empty.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("Access token is empty.")
        token = token.strip()
        claims = self._verified.get(token)
        if claims is None:
            claims = self._check_signature(token)
            if len(self._verified) >= 50_000:  # bounded: forget everything, tokens re-verify on their next use
                self._verified.clear()
            self._verified[token] = claims
        if claims.get("exp", 0) <= time.time():
            raise TokenError("Lifetime validation failed, the token is expired.")
        if claims.get("aud") != aud:
            raise TokenError("Access token validation failure. Invalid audience.")
        return claims

    def verify_signed(self, token: str) -> dict[str, Any]:
        """The claims of a token this instance signed (any kind), or TokenError; expiry is the caller's to check."""
        return self._check_signature(token)

    def _check_signature(self, token: str) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("IDX14100: JWT is not well formed, there are no dots (.).")
        expected = hmac.new(self._key, f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
        try:
            sig_ok = hmac.compare_digest(expected, _unb64(parts[2]))
            claims = json.loads(_unb64(parts[1]))
        except (ValueError, json.JSONDecodeError):
            raise TokenError("Access token validation failure. Invalid token.") from None
        if not sig_ok or not isinstance(claims, dict):
            raise TokenError("Access token validation failure. Invalid signature.")
        return claims


def _oauth_error(status: int, error: str, code: int, text: str, correlation_id: str | None,
                 base_url: str) -> SimResponse:
    now = datetime.now(timezone.utc)
    stamp = now.strftime("%Y-%m-%d %H:%M:%SZ")
    trace_id = str(uuid.uuid4())
    corr = correlation_id or str(uuid.uuid4())
    desc = f"AADSTS{code}: {text} Trace ID: {trace_id} Correlation ID: {corr} Timestamp: {stamp}"
    body = {"error": error, "error_description": desc, "error_codes": [code], "timestamp": stamp,
            "trace_id": trace_id, "correlation_id": corr, "error_uri": f"{base_url}/error?code={code}"}
    return SimResponse(status, body, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})


def token_endpoint(state: SimState, issuer: TokenIssuer, tenant_ref: str, form: dict[str, str],
                   base_url: str, correlation_id: str | None) -> tuple[str | None, SimResponse]:
    """Serve ``POST /{tenant}/oauth2/v2.0/token``; returns (resolved tenant id, response).

    Checks run in the order Entra applies them: tenant, grant, client, secret or client assertion,
    scope. Error texts never echo the client secret or the assertion.
    """
    def err(status: int, error: str, code: int, text: str) -> SimResponse:
        return _oauth_error(status, error, code, text, correlation_id, base_url)

    with state.lock:
        tenant = state.tenant(tenant_ref)
        if tenant is None:
            return None, err(400, "invalid_request", 90002,
                             f"Tenant '{tenant_ref}' not found. Check to make sure you have the correct tenant ID and "
                             "are signing into the correct cloud. Check with your subscription administrator, this "
                             "may happen if there are no active subscriptions for the tenant.")
        tid = tenant["tenantId"]
        app = dict(state.app_for(tenant))
        has_service_principal = tenant["consent"] is not False
        permissions = state.granted(tenant)
        lifetime = state.scenario["tokenLifetime"]

    grant = form.get("grant_type")
    if not grant:
        return tid, err(400, "invalid_request", 900144,
                        "The request body must contain the following parameter: 'grant_type'.")
    if grant != "client_credentials":
        return tid, err(400, "unsupported_grant_type", 70003,
                        f"The app requested an unsupported grant type '{grant[:40]}'.")
    client_id = form.get("client_id")
    if not client_id:
        return tid, err(400, "invalid_request", 900144,
                        "The request body must contain the following parameter: 'client_id'.")
    if client_id.lower() != app["clientId"].lower():
        # An app id Entra cannot resolve at all (wrong id, deleted registration, wrong tenant or cloud).
        return tid, err(400, "unauthorized_client", 700016,
                        f"Application with identifier '{client_id[:64]}' was not found in the directory '{tid}'. "
                        "This can happen if the application has not been installed by the administrator of the "
                        "tenant or consented to by any user in the tenant. You may have sent your authentication "
                        "request to the wrong tenant.")
    if not has_service_principal:
        # The app exists but has no service principal in this tenant (never consented, or the enterprise app was
        # deleted): "Microsoft Entra no longer issues access tokens without a client Service Principal"
        # (https://learn.microsoft.com/en-us/entra/identity/monitoring-health/reports-faq), answered as AADSTS7000229
        # with 401 invalid_client (message as observed, e.g. Azure/azure-sdk-for-net#46762).
        return tid, err(401, "invalid_client", 7000229,
                        f"The client application {app['clientId']} is missing service principal in the tenant "
                        f"{tid}. See instructions here: https://go.microsoft.com/fwlink/?linkid=2225119")
    if form.get("client_assertion") or form.get("client_assertion_type"):
        failure = _check_assertion(form, app, tid, tenant_ref, base_url, err)
        if failure is not None:
            return tid, failure
    else:
        secret = form.get("client_secret")
        if not secret:
            return tid, err(401, "invalid_client", 7000218,
                            "The request body must contain the following parameter: 'client_assertion' or "
                            "'client_secret'.")
        if not hmac.compare_digest(secret.encode(), (app.get("clientSecret") or "").encode()):
            return tid, err(401, "invalid_client", 7000215,
                            "Invalid client secret provided. Ensure the secret being sent in the request is the "
                            f"client secret value, not the client secret ID, for a secret added to app "
                            f"'{app['clientId']}'.")

    scopes = [s for s in (form.get("scope") or "").split() if s not in RESERVED_SCOPES]
    aud = None
    if len(scopes) == 1 and scopes[0].endswith("/.default"):
        aud = RESOURCES.get(scopes[0][: -len("/.default")].rstrip("/").lower())
    if aud is None:
        shown = " ".join(scopes)[:200] or "(empty)"
        return tid, err(400, "invalid_scope", 70011,
                        f"The provided request must include a 'scope' input parameter. The provided value for the "
                        f"input parameter 'scope' is not valid. The scope {shown} is not valid. Only "
                        "https://graph.microsoft.com/.default and https://outlook.office365.com/.default are served.")

    if aud == EXCHANGE_AUD:
        roles = [r for r in permissions if r in EXCHANGE_ROLES]
    else:
        roles = [r for r in permissions if r not in EXCHANGE_ROLES]
    token = issuer.mint(tid, app["clientId"], aud, roles, lifetime)
    body = {"token_type": "Bearer", "expires_in": lifetime, "ext_expires_in": lifetime, "access_token": token}
    return tid, SimResponse(200, body, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"})


def _jwt_parts(assertion: str) -> tuple[dict[str, Any], dict[str, Any], str, bytes]:
    """(header, claims, signing input, signature) of a compact JWS; ValueError when it is not one.

    Segments may carry base64 padding: azure-identity's certificate assertions do.
    """
    parts = assertion.strip().split(".")
    if len(parts) != 3:
        raise ValueError("not a compact JWT")
    header, claims = (json.loads(_unb64(part)) for part in parts[:2])
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise ValueError("header and payload must be JSON objects")
    return header, claims, f"{parts[0]}.{parts[1]}", _unb64(parts[2])


def _time_failure(claims: dict[str, Any], err: Any) -> SimResponse | None:
    now = time.time()
    exp, nbf = claims.get("exp"), claims.get("nbf")
    stamp = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%m/%d/%Y %H:%M:%S")  # noqa: E731
    if not isinstance(exp, (int, float)) or exp + CLOCK_SKEW <= now or \
            (isinstance(nbf, (int, float)) and nbf - CLOCK_SKEW > now):
        shown = stamp(exp) if isinstance(exp, (int, float)) else "(none)"
        return err(401, "invalid_client", 700024,
                   f"Client assertion is not within its valid time range. Current time: {stamp(now)}, expiry time "
                   f"of assertion {shown}.")
    return None


def _check_assertion(form: dict[str, str], app: dict[str, Any], tid: str, tenant_ref: str, base_url: str,
                     err: Any) -> SimResponse | None:
    """None when the client assertion authenticates the app, else Entra's error response.

    iss = sub = client_id: a certificate assertion, checked as Entra does (x5t or x5t#S256 names one of the app's
    certificates, RS256/PS256 signature, aud = this tenant's token endpoint, exp/nbf). Anything else is a federated
    assertion: its iss/sub/aud must match one of the app's federatedCredentials exactly (case-sensitive, as Entra
    matches since 2025). The simulator does NOT verify the external issuer's signature (it would need the issuer's
    OIDC keys); it only refuses unsigned ("alg": "none") tokens.
    """
    if form.get("client_assertion_type") != JWT_BEARER:
        if not form.get("client_assertion_type"):
            return err(400, "invalid_request", 900144,
                       "The request body must contain the following parameter: 'client_assertion_type'.")
        return err(401, "invalid_client", 700027,
                   f"Client assertion type '{form['client_assertion_type'][:80]}' is not supported; expected "
                   f"'{JWT_BEARER}'.")
    if not form.get("client_assertion"):
        return err(400, "invalid_request", 900144,
                   "The request body must contain the following parameter: 'client_assertion'.")
    try:
        header, claims, signing_input, signature = _jwt_parts(form["client_assertion"])
    except (ValueError, json.JSONDecodeError):
        return err(401, "invalid_client", 700027, "Client assertion is not a well-formed JWT.")
    client_id = app["clientId"].lower()
    iss, sub, aud = claims.get("iss"), claims.get("sub"), claims.get("aud")
    if str(iss).lower() == client_id and str(sub).lower() == client_id:
        return _check_certificate_assertion(header, claims, signing_input, signature, app, tid, tenant_ref,
                                            base_url, err)
    if str(header.get("alg", "none")).lower() == "none":
        return err(401, "invalid_client", 700027, "Client assertion failed signature validation: it is unsigned.")
    audiences = aud if isinstance(aud, list) else [aud]
    for fic in app.get("federatedCredentials") or []:
        if fic["issuer"] == iss and fic["subject"] == sub and any(a in fic["audiences"] for a in audiences):
            return _time_failure(claims, err)
    shown_aud = ", ".join(str(a) for a in audiences)
    return err(400, "invalid_request", 70021,
               f"No matching federated identity record found for presented assertion. Assertion Issuer: "
               f"'{str(iss)[:200]}'. Assertion Subject: '{str(sub)[:200]}'. Assertion Audience: '{shown_aud[:200]}'. "
               "https://learn.microsoft.com/entra/workload-id/workload-identity-federation")


def _check_certificate_assertion(header: dict[str, Any], claims: dict[str, Any], signing_input: str,
                                 signature: bytes, app: dict[str, Any], tid: str, tenant_ref: str, base_url: str,
                                 err: Any) -> SimResponse | None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    from .scenario import certificate_keys

    alg = header.get("alg")
    if alg not in ("RS256", "PS256"):
        return err(401, "invalid_client", 700027,
                   f"Client assertion failed signature validation: algorithm '{str(alg)[:20]}' is not supported "
                   "(RS256 or PS256).")
    try:
        wanted_sha1 = _unb64(header["x5t"]) if "x5t" in header else None
        wanted_sha256 = _unb64(header["x5t#S256"]) if "x5t#S256" in header else None
    except (ValueError, TypeError):
        wanted_sha1 = wanted_sha256 = None
    match = None
    for pem in app.get("certificates") or []:
        sha1, sha256, key, not_before, not_after = certificate_keys(pem)
        if (wanted_sha1 and hmac.compare_digest(sha1, wanted_sha1)) or \
                (wanted_sha256 and hmac.compare_digest(sha256, wanted_sha256)):
            match = key, not_before, not_after
            break
    if match is None:
        shown = (wanted_sha256 or wanted_sha1 or b"").hex().upper() or "(none)"
        return err(401, "invalid_client", 700027,
                   "Client assertion failed signature validation. [Reason - The key was not found., Thumbprint of key "
                   f"used by client: '{shown}', Please visit the Azure Portal, Graph Explorer or directly use MS "
                   f"Graph to see configured keys for app Id '{app['clientId']}'.]")
    key, not_before, not_after = match
    scheme = padding.PKCS1v15() if alg == "RS256" else padding.PSS(mgf=padding.MGF1(hashes.SHA256()),
                                                                 salt_length=padding.PSS.AUTO)
    try:
        key.verify(signature, signing_input.encode("ascii"), scheme, hashes.SHA256())
    except (InvalidSignature, ValueError):
        return err(401, "invalid_client", 700027, "Client assertion failed signature validation.")
    now = datetime.now(timezone.utc)
    if not not_before <= now <= not_after:
        return err(401, "invalid_client", 700027,
                   "Client assertion failed signature validation. [Reason - The key used is expired.]")
    valid_audiences = {f"{base_url}/{ref}/oauth2/v2.0/token".lower() for ref in (tenant_ref, tid)}
    aud = claims.get("aud")
    if not isinstance(aud, str) or aud.lower() not in valid_audiences:
        return err(401, "invalid_client", 700027,
                   f"Client assertion contains an invalid audience claim '{str(aud)[:200]}'; expected the token "
                   f"endpoint {base_url}/{tid}/oauth2/v2.0/token.")
    return _time_failure(claims, err)


def openid_configuration(base_url: str, tenant_ref: str) -> dict[str, Any]:
    """Minimal discovery document: enough for MSAL (sync azure-identity) to find the token endpoint."""
    root = f"{base_url}/{tenant_ref}"
    return {
        "token_endpoint": f"{root}/oauth2/v2.0/token",
        "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
        # MSAL's device flow reads it (msal/authority.py); Entra publishes it in every tenant's document.
        "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
        "issuer": f"{root}/v2.0",
        "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "tenant_region_scope": "EU",
    }
