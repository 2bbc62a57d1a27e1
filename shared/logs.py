"""Logging set-up for the CLI: authwatch's own warnings on stderr, the SDKs kept quiet.

azure-identity logs every failed token request at WARNING with Entra's whole answer; authwatch already records that
failure per tenant (and says it once, in words), so the SDK's copy is noise for a person at a terminal.
"""

from __future__ import annotations

import logging

QUIET_LOGGERS = ("azure", "azure.identity", "msal", "httpx", "kiota_http", "kiota_abstractions")


def configure_cli_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)
