from __future__ import annotations


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2, no traceback."""
