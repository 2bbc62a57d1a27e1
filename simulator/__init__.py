"""authwatch simulator: a local, HTTPS, multi-tenant stand-in for Entra ID, Microsoft Graph and the
Exchange Online admin API, faithful to Microsoft's documented wire formats. See README.md.
May import: nothing of authwatch (shared/, functions/): it plays Microsoft from Microsoft's documents, not our reading."""
from __future__ import annotations

from .scenario import load_scenario
from .server import Simulator

__all__ = ["Simulator", "load_scenario"]
