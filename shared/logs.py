"""Logging: structured lines (one event per line, with tenant id, stage, outcome, duration as key=value) for the
CLI and the Functions host, Application Insights when configured, and the SDKs kept quiet.

azure-identity logs every failed token request at WARNING with Entra's whole answer; authwatch already records that
failure per tenant (and says it once, in words), so the SDK's copy is noise.
"""

from __future__ import annotations

import logging
import os

QUIET_LOGGERS = ("azure", "azure.identity", "msal", "httpx", "kiota_http", "kiota_abstractions")
# Attributes every LogRecord has; anything else on a record came from `extra=` and is part of the event.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}


class StructuredFormatter(logging.Formatter):
    """`message key=value …` so a log line carries the event's fields, not just its sentence."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {key: value for key, value in vars(record).items() if key not in _STANDARD}
        return line + "".join(f" {key}={value}" for key, value in sorted(fields.items()))


def configure_cli_logging(verbose: bool = False) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(StructuredFormatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])
    # Explicit, so building Functions adapters inside a CLI command (reports, serve) does not turn INFO on.
    logging.getLogger("authwatch").setLevel(logging.INFO if verbose else logging.WARNING)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if verbose else logging.ERROR)


_observability_configured = False


def configure_observability() -> None:
    """In Functions: send authwatch's logs (with their fields as custom dimensions) and traces to Application
    Insights when APPLICATIONINSIGHTS_CONNECTION_STRING is set; quiet the SDKs either way. Runs once per process."""
    global _observability_configured
    if _observability_configured:
        return
    _observability_configured = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    if logging.getLogger("authwatch").level == logging.NOTSET:  # the CLI has chosen already
        logging.getLogger("authwatch").setLevel(logging.INFO)
    if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        from azure.monitor.opentelemetry import configure_azure_monitor  # heavy: only when it is wanted

        configure_azure_monitor(logger_name="authwatch")
