from __future__ import annotations

import re


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit status 2, no traceback."""


# Python's spellings that leak into messages from lower layers, and what a person reads instead.
_PLAIN = (
    (re.compile(r"got null \('None'\)"), "got null"),
    (re.compile(r"\bgot None\b"), "got nothing (the field is null or missing)"),
    (re.compile(r"\[Errno 21\] Is a directory: '([^']*)'"), r"\1 is a folder, expected a file"),
    (re.compile(r"\[Errno \d+\] "), ""),
    (re.compile(r"\bgot True\b"), "got true"),
    (re.compile(r"\bgot False\b"), "got false"),
)


def plain(message: str) -> str:
    """An error message in plain words: no Python reprs (None, [Errno 21] …) for the person at the terminal."""
    for pattern, replacement in _PLAIN:
        message = pattern.sub(replacement, message)
    return message
