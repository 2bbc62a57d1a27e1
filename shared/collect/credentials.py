"""How authwatch signs in to a customer tenant, described by data and turned into a real azure-identity credential.

A `CredentialSpec` is what the tenant registry stores: the mode, the app registration's client id and the NAMES of
the app settings that hold secret material — never the material itself. `build_credential` resolves those names in
the environment (on Azure a Key Vault reference, `@Microsoft.KeyVault(SecretUri=…)`, resolves into the setting) and
returns an async credential:

- ``federated`` (recommended, secretless): a user-assigned managed identity is a federated identity credential of
  the multi-tenant app; its token for ``api://AzureADTokenExchange`` is the client assertion
  (`ClientAssertionCredential`). The assertion callback is synchronous even for the aio credential, so it uses the
  sync `ManagedIdentityCredential`, shared per identity so its token cache serves every tenant.
- ``secret``: `ClientSecretCredential` with the value of `secret_setting`.
- ``certificate``: `CertificateCredential`; `certificate_setting` holds a path to a PEM file (key + certificate), or
  the certificate itself (PEM text, or base64 PKCS#12 — what a Key Vault reference to a certificate resolves to).

`CredentialError` says what is wrong with a spec or why it cannot be built, naming the field or the app setting and
never quoting a setting's value.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from azure.core.credentials import AccessToken

from shared.collect.endpoints import MicrosoftEndpoints

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

MODES = ("federated", "secret", "certificate")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
# Linux app setting names: letters, digits, underscores and periods.
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")
_FIELDS = {"mode": "mode", "clientId": "client_id", "secretSetting": "secret_setting",
           "certificateSetting": "certificate_setting", "managedIdentityClientId": "managed_identity_client_id"}
# Which optional field each mode needs; the others must be absent (a stray field is a misunderstanding).
_MODE_FIELD = {"secret": "secret_setting", "certificate": "certificate_setting",
               "federated": "managed_identity_client_id"}
_JSON_NAME = {python: json for json, python in _FIELDS.items()}

# The audience of the managed identity token used as assertion, per cloud (by the authority's host).
_EXCHANGE_AUDIENCES = {
    "login.microsoftonline.us": "api://AzureADTokenExchangeUSGov",
    "login.chinacloudapi.cn": "api://AzureADTokenExchangeChina",
}
PUBLIC_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"


class CredentialError(ValueError):
    """A credential spec is invalid, or cannot be turned into a credential (a missing app setting, an unreadable
    certificate). The message names the field or the setting, never a secret."""


_MISCONFIGURED: type | None = None


def _misconfigured() -> type:
    """CredentialMisconfigured, made on first use: it derives from azure-identity's CredentialUnavailableError, and
    azure-identity (with msal and cryptography) need not be imported to import the function app (cold start)."""
    global _MISCONFIGURED
    if _MISCONFIGURED is None:
        from azure.identity import CredentialUnavailableError

        class CredentialMisconfigured(CredentialUnavailableError):
            """Raised by the stand-in credential of a tenant whose credential could not be built: collection records
            it as a token failure of every source (code "CredentialMisconfigured") instead of crashing."""

        CredentialMisconfigured.__module__ = __name__
        _MISCONFIGURED = CredentialMisconfigured
    return _MISCONFIGURED


def __getattr__(name: str) -> Any:  # `from shared.collect.credentials import CredentialMisconfigured` still works
    if name == "CredentialMisconfigured":
        return _misconfigured()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class CredentialSpec:
    mode: str  # "federated" (recommended), "secret", "certificate"
    client_id: str  # the (multi-tenant) app registration's client id
    secret_setting: str | None = None  # secret: NAME of the app setting holding the client secret
    certificate_setting: str | None = None  # certificate: NAME of the app setting holding a PEM path (or the cert)
    managed_identity_client_id: str | None = None  # federated: the user-assigned managed identity's client id

    def validate(self) -> None:
        # Values are never quoted back: a secret pasted into the wrong field must not end up in a response or a log.
        if self.mode not in MODES:
            raise CredentialError(f"mode: expected one of {', '.join(MODES)}")
        if not isinstance(self.client_id, str) or not _GUID.match(self.client_id):
            raise CredentialError("clientId: expected the app registration's client id (a GUID)")
        needed = _MODE_FIELD[self.mode]
        for attribute in _MODE_FIELD.values():
            value = getattr(self, attribute)
            name = _JSON_NAME[attribute]
            if attribute != needed:
                if value is not None:
                    raise CredentialError(f"{name}: not used with mode {self.mode} (remove it)")
                continue
            if value is None or value == "":
                raise CredentialError(f"{name}: required with mode {self.mode}")
            if attribute == "managed_identity_client_id":
                if not isinstance(value, str) or not _GUID.match(value):
                    raise CredentialError(f"{name}: expected the managed identity's client id (a GUID)")
            elif not isinstance(value, str) or not _SETTING_NAME.match(value):
                raise CredentialError(f"{name}: expected the NAME of an app setting (letters, digits, '_' or '.', "
                                      "at most 128) that holds the value, not the value itself")

    def to_json(self) -> dict[str, str]:
        return {json_name: getattr(self, python) for json_name, python in _FIELDS.items()
                if getattr(self, python) is not None}

    @classmethod
    def from_json(cls, data: Any) -> CredentialSpec:
        if not isinstance(data, dict):
            raise CredentialError(f"expected a JSON object with {', '.join(_FIELDS)}, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise CredentialError(f"{unknown[0]}: unknown field (allowed: {', '.join(_FIELDS)}); a credential holds "
                                  "the names of app settings, never a secret")
        values = {python: data.get(json_name) for json_name, python in _FIELDS.items()}
        if isinstance(values["client_id"], str):
            values["client_id"] = values["client_id"].lower()
        if isinstance(values["managed_identity_client_id"], str):
            values["managed_identity_client_id"] = values["managed_identity_client_id"].lower()
        spec = cls(**values)
        spec.validate()
        return spec


def exchange_audience(authority: str) -> str:
    """The audience a managed identity token must have to be accepted as a federated assertion in this cloud."""
    host = authority.split("://", 1)[-1].split("/", 1)[0].lower()
    return _EXCHANGE_AUDIENCES.get(host, PUBLIC_EXCHANGE_AUDIENCE)


def _setting(env: Mapping[str, str], name: str, mode: str) -> str:
    value = env.get(name)
    if not value:
        raise CredentialError(f"app setting {name} is not set (credential mode {mode}); on Azure it usually holds a "
                              "Key Vault reference")
    return value


def _certificate_source(env: Mapping[str, str], name: str) -> dict[str, Any]:
    """certificate_path or certificate_data for CertificateCredential, from the setting's value."""
    value = _setting(env, name, "certificate").strip()
    if "-----BEGIN" in value:
        return {"certificate_data": value.encode()}
    if os.path.isfile(value):
        return {"certificate_path": value}
    looks_like_path = value.startswith(("/", ".", "~")) or (len(value) < 1024 and os.sep in value)
    if not looks_like_path:
        try:
            return {"certificate_data": base64.b64decode(value, validate=True)}
        except (binascii.Error, ValueError):
            pass
    raise CredentialError(f"app setting {name} names no readable certificate file and holds no PEM or base64 "
                          "PKCS#12 certificate")


# One sync ManagedIdentityCredential per identity (and audience): its in-memory token cache then serves every tenant,
# so thousands of tenants cost one identity-endpoint call per token lifetime, not one per tenant.
_MI_LOCK = threading.Lock()
_MI_CREDENTIALS: dict[str | None, Any] = {}


def managed_identity_assertion(client_id: str, audience: str = PUBLIC_EXCHANGE_AUDIENCE) -> Callable[[], str]:
    """The production assertion source: the managed identity's token for the token-exchange audience."""
    def assertion() -> str:
        from azure.identity import ManagedIdentityCredential

        with _MI_LOCK:
            credential = _MI_CREDENTIALS.get(client_id)
            if credential is None:
                credential = _MI_CREDENTIALS[client_id] = ManagedIdentityCredential(client_id=client_id)
        return credential.get_token(f"{audience}/.default").token

    return assertion


def build_credential(tenant_id: str, spec: CredentialSpec, endpoints: MicrosoftEndpoints, env: Mapping[str, str], *,
                     assertion_provider: Callable[[], str] | None = None,
                     transport: Any = None) -> AsyncTokenCredential:
    """The async credential for one customer tenant. Raises CredentialError when it cannot be built.

    `assertion_provider` replaces the managed identity as the source of federated assertions (tests, or a
    workload that gets its assertion elsewhere); it is called each time a new token is needed. `transport` is a
    shared azure-core transport (see `ConnectionPools`) whose session already trusts `endpoints.ca_bundle`.
    """
    from azure.identity.aio import CertificateCredential, ClientAssertionCredential, ClientSecretCredential

    spec.validate()
    options: dict[str, Any] = {"authority": endpoints.authority}
    if transport is not None:
        options["transport"] = transport
    elif endpoints.ca_bundle:
        options["connection_verify"] = endpoints.ca_bundle
    if spec.mode == "secret":
        secret = _setting(env, spec.secret_setting or "", "secret")
        return ClientSecretCredential(tenant_id, spec.client_id, secret, **options)
    if spec.mode == "certificate":
        source = _certificate_source(env, spec.certificate_setting or "")
        try:
            return CertificateCredential(tenant_id, spec.client_id, **source, **options)
        except OSError as error:
            raise CredentialError(f"app setting {spec.certificate_setting}: the certificate file cannot be read "
                                  f"({error.strerror or type(error).__name__})") from None
        except (ValueError, TypeError):
            raise CredentialError(f"app setting {spec.certificate_setting}: not a usable certificate (PEM or "
                                  "PKCS#12 with an unencrypted RSA private key and its certificate)") from None
    provider = assertion_provider or managed_identity_assertion(spec.managed_identity_client_id or "",
                                                                exchange_audience(endpoints.authority))
    return ClientAssertionCredential(tenant_id, spec.client_id, provider, **options)


class UnavailableCredential:
    """Stands in for a credential that could not be built: every get_token raises CredentialMisconfigured with the
    reason, so collection records it against every source (as it does a refused sign-in) and carries on."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise _misconfigured()(message=self.reason)

    async def get_token_info(self, *scopes: str, options: Any = None) -> AccessToken:
        raise _misconfigured()(message=self.reason)

    async def close(self) -> None:
        return None

    async def __aenter__(self) -> UnavailableCredential:
        return self

    async def __aexit__(self, *_: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"UnavailableCredential({self.reason!r})"
