"""Plain-text tables for people. Colour only when writing to a terminal, so pipes and CI logs stay clean."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from typing import Iterable, Sequence, TextIO

_COLOURS = {"pass": "32", "fail": "31", "pending": "33", "unknown": "35", "not_applicable": "90"}


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def status_label(status: str, colour: bool) -> str:
    label = status.upper()
    if not colour or status not in _COLOURS:
        return label
    return f"\033[{_COLOURS[status]}m{label}\033[0m"


def one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, stream: TextIO | None = None,
          wrap_last: bool = True, status_columns: Iterable[int] = ()) -> None:
    """Print aligned columns fitted to the terminal: the last column wraps (or, with wrap_last=False, is cut so
    each row stays one line)."""
    status_columns = set(status_columns)
    stream = stream or sys.stdout  # looked up per call so redirected stdout (tests, pipes) is honoured
    colour = use_colour(stream)
    widths = [max([len(header)] + [len(row[index]) for row in rows]) for index, header in enumerate(headers)]
    total = shutil.get_terminal_size((160, 24)).columns
    widths[-1] = max(30, min(widths[-1], total - sum(widths[:-1]) - 2 * (len(headers) - 1)))
    indent = " " * (sum(widths[:-1]) + 2 * (len(headers) - 1))
    print("  ".join(header.ljust(width) for header, width in zip(headers, widths)).rstrip(), file=stream)
    print("  ".join("-" * width for width in widths), file=stream)
    for row in rows:
        cells = []
        last = textwrap.wrap(" ".join(row[-1].split()), widths[-1]) or [""] if wrap_last else [one_line(row[-1], widths[-1])]
        for index, (cell, width) in enumerate(zip(row, widths)):
            padded = cell.ljust(width) if index < len(row) - 1 else last[0]
            if index in status_columns:
                padded = status_label(cell, colour) + (" " * (width - len(cell)) if index < len(row) - 1 else "")
            cells.append(padded)
        print("  ".join(cells).rstrip(), file=stream)
        for continuation in last[1:]:
            print(indent + continuation, file=stream)
