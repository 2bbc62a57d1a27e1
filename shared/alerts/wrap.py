"""Wrapping text for a terminal without breaking what a person will paste: the text's own line breaks are kept,
prose wraps at spaces only (never inside a hyphenated word such as `Set-User`), and a PowerShell command — a whole
line, or a `Verb-Noun -Parameter value …` run inside a sentence — is never split across lines, however long."""

from __future__ import annotations

import re
import textwrap

_GLUE = "\ue000"  # private-use character: holds a command's words together while textwrap runs
_CMDLET = r"[A-Z][a-z]+-[A-Z][A-Za-z]+"
_VALUE = r"""(?:'[^']*'|"[^"]*"|\$\w+|\([^)]*\)|<[^>]+>|\{[^}]*\}|[\w@:/\\*-]*\w(?:\.\w+)*)"""
_POSITIONAL = r"""(?:'[^']*'|"[^"]*"|\$\w+|<[^>]+>|[\w-]+@[\w.-]*\w)"""
COMMAND = re.compile(rf"\b{_CMDLET}(?: {_POSITIONAL})?(?: -\w+(?::\$\w+)?(?: (?!-){_VALUE})?)*")
_WHOLE_LINE = re.compile(rf"^{_CMDLET}\b")


def wrap(text: str, width: int, *, first: str = "", rest: str = "") -> list[str]:
    """`text` as terminal lines of at most `width` characters (commands excepted), the first prefixed by `first`,
    the others by `rest`."""
    lines: list[str] = []
    for line in text.splitlines() or [""]:
        indent = rest if lines else first
        line = " ".join(line.split())
        if _WHOLE_LINE.match(line):
            lines.append(indent + line)
            continue
        glued = COMMAND.sub(lambda match: match.group(0).replace(" ", _GLUE), line)
        wrapped = textwrap.wrap(glued, width, initial_indent=indent, subsequent_indent=rest,
                                break_on_hyphens=False, break_long_words=False)
        lines += [piece.replace(_GLUE, " ") for piece in wrapped] or [indent.rstrip()]
    return lines
