"""Where Microsoft lives and how authwatch signs in to one tenant: the real azure-identity and httpx stack.

Production talks to login.microsoftonline.com, graph.microsoft.com and outlook.office365.com; the simulator replaces
all three with one https://127.0.0.1 address and a throw-away CA, which is why every endpoint is a setting.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

import httpx
from azure.identity.aio import ClientSecretCredential

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
    """One customer tenant and the app registration authwatch uses to read it."""

    tenant_id: str
    client_id: str
    client_secret: str = field(repr=False)  # never printed: repr hides it
    display_name: str = ""
    settings: dict = field(default_factory=dict)

    def credential(self, endpoints: MicrosoftEndpoints) -> ClientSecretCredential:
        options = {"connection_verify": endpoints.ca_bundle} if endpoints.ca_bundle else {}
        return ClientSecretCredential(
            self.tenant_id, self.client_id, self.client_secret, authority=endpoints.authority, **options
        )


def http_client(endpoints: MicrosoftEndpoints) -> httpx.AsyncClient:
    """One pooled HTTP client for Graph and Exchange, with msgraph's middleware (retry honouring Retry-After)."""
    from msgraph_core import GraphClientFactory

    client = httpx.AsyncClient(verify=endpoints.ssl_context(), timeout=endpoints.timeout_s)
    return GraphClientFactory.create_with_default_middleware(client=client)
