"""Integration fixtures live in tests/conftest.py (shared with e2e); this keeps the old import path working."""

from tests.conftest import endpoints_for

__all__ = ["endpoints_for"]
