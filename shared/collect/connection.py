"""Where Microsoft lives and how authwatch signs in to one tenant: the real azure-identity and httpx stack.

Production talks to login.microsoftonline.com, graph.microsoft.com and outlook.office365.com; the simulator replaces
all three with one https://127.0.0.1 address and a throw-away CA, which is why every endpoint is a setting.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import httpx
from azure.identity.aio import ClientSecretCredential

from shared.collect.credentials import CredentialError, CredentialSpec, UnavailableCredential, build_credential

if TYPE_CHECKING:
    from azure.core.credentials_async import AsyncTokenCredential

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
EXCHANGE_SCOPE = "https://outlook.office365.com/.default"


@dataclass(frozen=True)
class MicrosoftEndpoints:
    authority: str = "https://login.microsoftonline.com"
    graph: str = "https://graph.microsoft.com/v1.0"
    exchange: str = "https://outlook.office365.com"
    ca_bundle: str | None = None  # extra CA to trust (the simulator's); None = the system store
    timeout_s: float = 30.0

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else ssl.create_default_context()


@dataclass(frozen=True)
class TenantAccess:
    """One customer tenant and how authwatch signs in to read it.

    Either the legacy explicit `client_secret` (the demo, tests, `authwatch collect`) or a `credential_spec` from the
    tenant registry, resolved against `env` (the app settings) when `credential()` is called. The secret, the env
    mapping and the assertion provider are kept out of repr and comparisons.
    """

    tenant_id: str
    client_id: str = ""
    client_secret: str | None = field(default=None, repr=False)  # never printed: repr hides it
    display_name: str = ""
    settings: dict = field(default_factory=dict)
    credential_spec: CredentialSpec | None = None
    env: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)
    assertion_provider: Callable[[], str] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.credential_spec is not None:
            if self.client_secret is not None:
                raise ValueError(f"tenant {self.tenant_id}: give either client_secret or credential_spec, not both")
            if not self.client_id:
                object.__setattr__(self, "client_id", self.credential_spec.client_id)
            elif self.client_id.lower() != self.credential_spec.client_id.lower():
                raise ValueError(f"tenant {self.tenant_id}: client_id differs from credential_spec.client_id")

    def credential(self, endpoints: MicrosoftEndpoints) -> AsyncTokenCredential:
        """The async credential to use (and close) for one collection.

        Never raises for a credential that cannot be built (missing app setting, unreadable certificate, no
        credential at all): it returns a stand-in whose get_token raises `CredentialMisconfigured` with the reason,
        so `collect_tenant` records it as a token failure of every source.
        """
        if self.credential_spec is not None:
            try:
                return build_credential(self.tenant_id, self.credential_spec, endpoints, self.env,
                                        assertion_provider=self.assertion_provider)
            except CredentialError as error:
                return UnavailableCredential(f"credential ({self.credential_spec.mode}): {error}")
        if not self.client_secret:
            return UnavailableCredential("no credential configured for this tenant (no client secret, no "
                                         "credential spec)")
        options = {"connection_verify": endpoints.ca_bundle} if endpoints.ca_bundle else {}
        return ClientSecretCredential(
            self.tenant_id, self.client_id, self.client_secret, authority=endpoints.authority, **options
        )


def http_client(endpoints: MicrosoftEndpoints) -> httpx.AsyncClient:
    """One pooled HTTP client for Graph and Exchange, with msgraph's middleware (retry honouring Retry-After)."""
    from msgraph_core import GraphClientFactory

    client = httpx.AsyncClient(verify=endpoints.ssl_context(), timeout=endpoints.timeout_s)
    return GraphClientFactory.create_with_default_middleware(client=client)
