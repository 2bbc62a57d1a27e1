"""authwatch simulator: a local, HTTPS, multi-tenant stand-in for Entra ID, Microsoft Graph and the
Exchange Online admin API, faithful to the wire formats the real SDKs use. See README.md."""
from __future__ import annotations

from .scenario import load_scenario
from .server import Simulator

__all__ = ["Simulator", "load_scenario"]
