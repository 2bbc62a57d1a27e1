"""Where Microsoft is: the token authority, Graph and Exchange Online base URLs, the CA bundle to trust and the
per-request timeout. One value per process (the app settings), shared by the connection and credential code.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass


@dataclass(frozen=True)
class MicrosoftEndpoints:
    authority: str = "https://login.microsoftonline.com"
    graph: str = "https://graph.microsoft.com/v1.0"
    exchange: str = "https://outlook.office365.com"
    # Partner Center's REST API (MSP onboarding only): https://learn.microsoft.com/partner-center/developer/partner-center-rest-api-reference
    partner_center: str = "https://api.partnercenter.microsoft.com"
    ca_bundle: str | None = None  # extra CA to trust (the simulator's); None = the system store
    timeout_s: float = 30.0

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_bundle) if self.ca_bundle else ssl.create_default_context()
