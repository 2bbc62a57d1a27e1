"""Credential modes against the simulator over real HTTPS, with the real azure-identity credential classes.

secret (from an app setting), certificate (a throw-away certificate registered on the scenario's app), federated
(ClientAssertionCredential with an injected assertion, and the production managed-identity callback against a local
App Service identity endpoint), and a credential that cannot be built, which must end up as a source error.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from azure.core.exceptions import ClientAuthenticationError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from shared.collect import collect_tenant
from shared.collect import credentials as credentials_module
from shared.collect.connection import GRAPH_SCOPE, TenantAccess
from shared.collect.credentials import CredentialSpec, build_credential
from shared.model import SOURCES
from shared.tenants.config import TenantConfig
from simulator import load_scenario
from tests.integration.conftest import endpoints_for

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=timezone.utc)
APP_ID = "5f0c8a7e-7c1b-4c52-9a43-6b1f2d3e4a50"
APP_TENANT = "0a000000-0000-4000-8000-0000000000ff"  # where the multi-tenant app (and the identity) live
CUSTOMER = "0a000000-0000-4000-8000-000000000001"
MI_CLIENT_ID = "0b0b0b0b-1111-4222-8333-944445555777"
MI_PRINCIPAL_ID = "0c0c0c0c-1111-4222-8333-944445555888"
SECRET = "the-right-secret"
ISSUER = f"https://login.microsoftonline.com/{APP_TENANT}/v2.0"
EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def make_certificate(*, days: int = 30, key=None) -> tuple[str, str]:
    """(certificate PEM, key PEM) of a throw-away self-signed certificate."""
    key = key or rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "authwatch test")])
    now = datetime.now(timezone.utc)
    start, end = (now - timedelta(days=1), now + timedelta(days=days)) if days > 0 else \
        (now - timedelta(days=10), now - timedelta(days=1))
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


@pytest.fixture(scope="module")
def certificate() -> tuple[str, str]:
    return make_certificate()


def scenario(cert_pem: str, **app) -> dict:
    return {
        "app": {"clientId": APP_ID, "clientSecret": SECRET, "certificates": [cert_pem],
                "federatedCredentials": [{"name": "authwatch-identity", "issuer": ISSUER,
                                          "subject": MI_PRINCIPAL_ID, "audience": EXCHANGE_AUDIENCE}], **app},
        "tenants": [{"tenantId": CUSTOMER, "displayName": "Contoso"}],
    }


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def jwt(claims: dict, *, header: dict | None = None, sign=None) -> str:
    header = header or {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else \
        hmac.new(b"external-issuer-key", signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def federated_assertion(*, subject: str = MI_PRINCIPAL_ID, issuer: str = ISSUER, audience: str = EXCHANGE_AUDIENCE,
                        lifetime: int = 600) -> str:
    now = int(time.time())
    return jwt({"iss": issuer, "sub": subject, "aud": audience, "iat": now, "nbf": now, "exp": now + lifetime,
                "oid": subject, "tid": APP_TENANT})


def config(credential: dict) -> TenantConfig:
    return TenantConfig.from_json({"tenantId": CUSTOMER, "displayName": "Contoso",
                                   "credential": {"clientId": APP_ID, **credential}})


FEDERATED = {"mode": "federated", "managedIdentityClientId": MI_CLIENT_ID}


def collect(sim, access: TenantAccess):
    return asyncio.run(collect_tenant(access, endpoints_for(sim), now=NOW))


async def graph_token(credential) -> str:
    try:
        return (await credential.get_token(GRAPH_SCOPE)).token
    finally:
        await credential.close()


def claims_of(token: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


# -- the three modes, end to end ------------------------------------------------------------------------------------

def test_secret_mode_reads_the_secret_from_the_named_app_setting(simulator_for, certificate):
    sim = simulator_for(scenario(certificate[0]))
    cfg = config({"mode": "secret", "secretSetting": "AUTHWATCH_SECRET_CONTOSO"})
    snapshot = collect(sim, cfg.access({"AUTHWATCH_SECRET_CONTOSO": SECRET}))
    assert snapshot.errors == {} and snapshot.graph["organization"]["displayName"] == "Contoso"
    assert snapshot.settings == cfg.settings()

    wrong = collect(sim, cfg.access({"AUTHWATCH_SECRET_CONTOSO": "an-old-secret"}))
    assert set(wrong.errors) == set(SOURCES) and wrong.errors["graph.organization"].code == "AADSTS7000215"
    assert "an-old-secret" not in json.dumps(wrong.to_json())


def test_certificate_mode_with_a_pem_file_gets_tokens_and_collects(simulator_for, certificate, tmp_path):
    cert_pem, key_pem = certificate
    sim = simulator_for(scenario(cert_pem))
    path = tmp_path / "authwatch.pem"
    path.write_text(key_pem + cert_pem)
    cfg = config({"mode": "certificate", "certificateSetting": "AUTHWATCH_CERT"})
    token = asyncio.run(graph_token(build_credential(CUSTOMER, cfg.credential, endpoints_for(sim),
                                                     {"AUTHWATCH_CERT": str(path)})))
    assert claims_of(token)["tid"] == CUSTOMER and claims_of(token)["appid"] == APP_ID
    snapshot = collect(sim, cfg.access({"AUTHWATCH_CERT": str(path)}))
    assert snapshot.errors == {} and snapshot.exchange["transportConfig"]
    # What a Key Vault reference to a PEM certificate resolves to: the PEM itself in the setting.
    assert collect(sim, cfg.access({"AUTHWATCH_CERT": key_pem + cert_pem})).errors == {}


def test_an_unregistered_certificate_is_refused_with_aadsts700027(simulator_for, certificate, tmp_path):
    sim = simulator_for(scenario(certificate[0]))
    other_cert, other_key = make_certificate()
    path = tmp_path / "other.pem"
    path.write_text(other_key + other_cert)
    cfg = config({"mode": "certificate", "certificateSetting": "AUTHWATCH_CERT"})
    snapshot = collect(sim, cfg.access({"AUTHWATCH_CERT": str(path)}))
    assert set(snapshot.errors) == set(SOURCES)
    assert snapshot.errors["graph.organization"].code == "AADSTS700027"


def test_federated_mode_with_an_injected_assertion_gets_tokens_and_collects(simulator_for, certificate):
    sim = simulator_for(scenario(certificate[0]))
    calls = []

    def assertion() -> str:
        calls.append(1)
        return federated_assertion()

    snapshot = collect(sim, config(FEDERATED).access({}, assertion_provider=assertion))
    assert snapshot.errors == {} and snapshot.graph["conditionalAccessPolicies"] == []
    assert len(calls) == sim.request_counts["token"] >= 2  # a fresh assertion for every token request


def test_federated_mode_with_the_wrong_subject_gets_aadsts70021(simulator_for, certificate):
    sim = simulator_for(scenario(certificate[0]))
    wrong = lambda: federated_assertion(subject=str(uuid.uuid4()))  # noqa: E731
    credential = build_credential(CUSTOMER, config(FEDERATED).credential, endpoints_for(sim), {},
                                  assertion_provider=wrong)
    with pytest.raises(ClientAuthenticationError, match="AADSTS70021: No matching federated identity record"):
        asyncio.run(graph_token(credential))
    snapshot = collect(sim, config(FEDERATED).access({}, assertion_provider=wrong))
    assert snapshot.unreachable and set(snapshot.errors) == set(SOURCES)
    error = snapshot.errors["exchange.transportConfig"]
    assert (error.status, error.code) == (400, "AADSTS70021")


def test_federated_mode_through_the_managed_identity_callback(simulator_for, certificate, monkeypatch):
    """The production path: sync ManagedIdentityCredential (App Service flavour, as on Azure Functions) mints the
    assertion for api://AzureADTokenExchange; the app exchanges it for a customer-tenant token."""
    sim = simulator_for(scenario(certificate[0]))
    requests: list[dict] = []

    class IdentityEndpoint(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's naming
            query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
            requests.append({"query": query, "header": self.headers.get("X-IDENTITY-HEADER")})
            body = json.dumps({"access_token": federated_assertion(audience=query["resource"]),
                               "expires_on": str(int(time.time()) + 3600), "resource": query["resource"],
                               "token_type": "Bearer", "client_id": query.get("client_id")}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), IdentityEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    mi_client_id = str(uuid.uuid4())  # its own cache entry in the shared managed-identity credentials
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", "local-identity-header")
    try:
        cfg = config({"mode": "federated", "managedIdentityClientId": mi_client_id})
        first = collect(sim, cfg.access({}))
        second = collect(sim, cfg.access({}))
    finally:
        credentials_module._MI_CREDENTIALS.pop(mi_client_id, None)
        server.shutdown()
        server.server_close()
    assert first.errors == {} and second.errors == {}
    assert requests and requests[0]["header"] == "local-identity-header"
    assert requests[0]["query"]["resource"] == EXCHANGE_AUDIENCE
    assert requests[0]["query"]["client_id"] == mi_client_id
    assert len(requests) == 1  # the identity's token is cached across tokens and tenants


# -- a credential that cannot be built ------------------------------------------------------------------------------

@pytest.mark.parametrize(("credential", "env", "reason"), [
    ({"mode": "secret", "secretSetting": "AUTHWATCH_SECRET_CONTOSO"}, {},
     "app setting AUTHWATCH_SECRET_CONTOSO is not set"),
    ({"mode": "certificate", "certificateSetting": "AUTHWATCH_CERT"}, {"AUTHWATCH_CERT": "/nonexistent/cert.pem"},
     "app setting AUTHWATCH_CERT names no readable certificate file"),
])
def test_a_credential_that_cannot_be_built_is_a_source_error_everywhere(simulator_for, certificate, credential, env,
                                                                         reason):
    sim = simulator_for(scenario(certificate[0]))
    snapshot = collect(sim, config(credential).access(env))  # nothing raises
    assert snapshot.unreachable and snapshot.graph == {} and snapshot.exchange == {}
    assert set(snapshot.errors) == set(SOURCES)
    for error in snapshot.errors.values():
        assert error.code == "CredentialMisconfigured" and reason in error.message
    assert sim.request_counts.get("token", 0) == 0  # nothing was sent to Entra


# -- the simulator's token endpoint, assertion by assertion ---------------------------------------------------------

def post_token(sim, assertion: str | None, *, tenant: str = CUSTOMER, assertion_type: str | None = JWT_BEARER,
               **extra) -> httpx.Response:
    form = {"grant_type": "client_credentials", "client_id": APP_ID, "scope": GRAPH_SCOPE, **extra}
    if assertion is not None:
        form["client_assertion"] = assertion
    if assertion_type is not None:
        form["client_assertion_type"] = assertion_type
    with httpx.Client(verify=sim.ssl_context()) as http:
        return http.post(f"{sim.url}/{tenant}/oauth2/v2.0/token", data=form)


def certificate_assertion(sim, cert_pem: str, key_pem: str, *, alg: str = "RS256", aud: str | None = None,
                          lifetime: int = 600, x5t_cert: str | None = None) -> str:
    key = serialization.load_pem_private_key(key_pem.encode(), None)
    cert = x509.load_pem_x509_certificate((x5t_cert or cert_pem).encode())
    header = {"alg": alg, "typ": "JWT"}
    if alg == "RS256":
        header["x5t"] = b64(cert.fingerprint(hashes.SHA1()))  # noqa: S303
    else:
        header["x5t#S256"] = b64(cert.fingerprint(hashes.SHA256()))
    now = int(time.time())
    claims = {"iss": APP_ID, "sub": APP_ID, "jti": str(uuid.uuid4()), "nbf": now, "exp": now + lifetime,
              "aud": aud or f"{sim.url}/{CUSTOMER}/oauth2/v2.0/token"}
    scheme = padding.PKCS1v15() if alg == "RS256" else padding.PSS(padding.MGF1(hashes.SHA256()), 32)
    return jwt(claims, header=header, sign=lambda data: key.sign(data, scheme, hashes.SHA256()))


def aadsts(response: httpx.Response) -> tuple[int, str, int]:
    body = response.json()
    assert set(body) >= {"error", "error_description", "error_codes", "timestamp", "trace_id", "correlation_id",
                         "error_uri"}
    assert body["error_description"].startswith(f"AADSTS{body['error_codes'][0]}: ")
    return response.status_code, body["error"], body["error_codes"][0]


def test_certificate_assertions_rs256_and_ps256(simulator_for, certificate):
    cert_pem, key_pem = certificate
    sim = simulator_for(scenario(cert_pem))
    for alg in ("RS256", "PS256"):
        ok = post_token(sim, certificate_assertion(sim, cert_pem, key_pem, alg=alg))
        assert ok.status_code == 200, ok.text
        assert claims_of(ok.json()["access_token"])["tid"] == CUSTOMER


def test_bad_certificate_assertions(simulator_for, certificate):
    cert_pem, key_pem = certificate
    sim = simulator_for(scenario(cert_pem))
    other_cert, other_key = make_certificate()
    good = certificate_assertion(sim, cert_pem, key_pem)
    tampered = good.rsplit(".", 1)[0] + "." + b64(b"\0" * 256)
    cases = {
        "unknown certificate": certificate_assertion(sim, other_cert, other_key),
        "signed by another key": certificate_assertion(sim, cert_pem, other_key),
        "tampered signature": tampered,
        "wrong audience": certificate_assertion(sim, cert_pem, key_pem, aud="https://login.microsoftonline.com/x"),
        "not a jwt": "abc.def",
    }
    for name, assertion in cases.items():
        response = post_token(sim, assertion)
        assert aadsts(response) == (401, "invalid_client", 700027), name
    unknown = post_token(sim, cases["unknown certificate"]).json()["error_description"]
    assert "The key was not found" in unknown
    expired = post_token(sim, certificate_assertion(sim, cert_pem, key_pem, lifetime=-600))
    assert aadsts(expired) == (401, "invalid_client", 700024)


def test_an_expired_certificate_is_refused(simulator_for):
    cert_pem, key_pem = make_certificate(days=-1)
    sim = simulator_for(scenario(cert_pem))
    response = post_token(sim, certificate_assertion(sim, cert_pem, key_pem))
    assert aadsts(response) == (401, "invalid_client", 700027)
    assert "expired" in response.json()["error_description"]


def test_federated_assertions(simulator_for, certificate):
    sim = simulator_for(scenario(certificate[0]))
    assert post_token(sim, federated_assertion()).status_code == 200
    for name, assertion in {
        "wrong subject": federated_assertion(subject="someone-else"),
        "wrong issuer": federated_assertion(issuer="https://sts.windows.net/x/"),
        "wrong audience": federated_assertion(audience="api://other"),
        "subject in other case": federated_assertion(subject=MI_PRINCIPAL_ID.upper()),
    }.items():
        response = post_token(sim, assertion)
        assert aadsts(response) == (400, "invalid_request", 70021), name
    description = post_token(sim, federated_assertion(subject="someone-else")).json()["error_description"]
    assert f"Assertion Issuer: '{ISSUER}'. Assertion Subject: 'someone-else'. Assertion Audience: " \
           f"'{EXCHANGE_AUDIENCE}'." in description
    expired = post_token(sim, federated_assertion(lifetime=-600))
    assert aadsts(expired) == (401, "invalid_client", 700024)
    unsigned = federated_assertion().rsplit(".", 2)
    header = b64(json.dumps({"alg": "none"}).encode())
    assert aadsts(post_token(sim, f"{header}.{unsigned[1]}.")) == (401, "invalid_client", 700027)


def test_assertion_parameters_and_secretless_apps(simulator_for, certificate):
    sim = simulator_for(scenario(certificate[0]))
    assert aadsts(post_token(sim, federated_assertion(), assertion_type=None)) == (400, "invalid_request", 900144)
    assert aadsts(post_token(sim, None)) == (400, "invalid_request", 900144)
    assert aadsts(post_token(sim, federated_assertion(), assertion_type="urn:other")) == \
        (401, "invalid_client", 700027)
    secretless = simulator_for(load_scenario({
        "app": {"clientId": APP_ID, "federatedCredentials": [{"issuer": ISSUER, "subject": MI_PRINCIPAL_ID}]},
        "tenants": [{"tenantId": CUSTOMER}]}))
    assert post_token(secretless, federated_assertion()).status_code == 200  # default audience
    refused = post_token(secretless, None, assertion_type=None, client_secret="anything")
    assert aadsts(refused) == (401, "invalid_client", 7000215)
    assert "private_key_jwt" in httpx.get(f"{sim.url}/{CUSTOMER}/v2.0/.well-known/openid-configuration",
                                          verify=sim.ssl_context()).json()["token_endpoint_auth_methods_supported"]


@pytest.mark.parametrize(("app", "field"), [
    ({"clientId": APP_ID}, "app.clientSecret"),
    ({"clientId": APP_ID, "certificates": ["not a pem"]}, r"app.certificates\[0\]"),
    ({"clientId": APP_ID, "certificates": "pem"}, "app.certificates"),
    ({"clientId": APP_ID, "federatedCredentials": [{"issuer": ISSUER}]}, r"app.federatedCredentials\[0\].subject"),
    ({"clientId": APP_ID, "federatedCredentials": [{"issuer": ISSUER, "subject": "s", "audiance": "a"}]},
     r"app.federatedCredentials\[0\].audiance"),
    ({"clientId": APP_ID, "federatedCredentials": [{"issuer": ISSUER, "subject": "s", "audiences": []}]},
     r"app.federatedCredentials\[0\].audience"),
])
def test_scenario_validates_certificates_and_federated_credentials(app, field):
    with pytest.raises(ValueError, match=f"scenario: {field}: "):
        load_scenario({"app": app, "tenants": [{"tenantId": CUSTOMER}]})


def test_scenario_refuses_a_non_rsa_certificate():
    key = ec.generate_private_key(ec.SECP256R1())
    cert_pem, _ = make_certificate(key=key)
    with pytest.raises(ValueError, match=r"scenario: app.certificates\[0\]: the certificate's key must be RSA"):
        load_scenario({"app": {"clientId": APP_ID, "certificates": [cert_pem]}, "tenants": [{"tenantId": CUSTOMER}]})
