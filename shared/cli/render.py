"""Plain-text tables for people. Colour only when writing to a terminal, so pipes and CI logs stay clean."""

from __future__ import annotations

import os
import shutil
import sys
from typing import Iterable, Sequence, TextIO

from shared.alerts.wrap import wrap

_COLOURS = {"pass": "32", "fail": "31", "pending": "33", "unknown": "35", "not_applicable": "90",
            "unreachable": "31"}
_WORDS = {"not_applicable": "N/A"}


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and "NO_COLOR" not in os.environ


def status_text(status: str) -> str:
    return _WORDS.get(status, status.upper())


def one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: max(width - 1, 1)] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, stream: TextIO | None = None,
          wrap_last: bool = True, status_columns: Iterable[int] = ()) -> None:
    """Print aligned columns fitted to the terminal: the last column wraps (or, with wrap_last=False, is cut so
    each row stays one line). Cells in `status_columns` are statuses: shown in capitals, coloured on a terminal."""
    status_columns = set(status_columns)
    stream = stream or sys.stdout  # looked up per call so redirected stdout (tests, pipes) is honoured
    colour = use_colour(stream)
    shown = [[status_text(cell) if index in status_columns else cell for index, cell in enumerate(row)]
             for row in rows]
    widths = [max([len(header)] + [len(row[index]) for row in shown]) for index, header in enumerate(headers)]
    total = shutil.get_terminal_size((160, 24)).columns
    widths[-1] = max(30, min(widths[-1], total - sum(widths[:-1]) - 2 * (len(headers) - 1)))
    indent = " " * (sum(widths[:-1]) + 2 * (len(headers) - 1))
    print("  ".join(header.ljust(width) for header, width in zip(headers, widths)).rstrip(), file=stream)
    print("  ".join("-" * width for width in widths), file=stream)
    for raw, row in zip(rows, shown):
        last = wrap(row[-1], widths[-1]) if wrap_last else [one_line(row[-1], widths[-1])]
        cells = []
        for index, (cell, width) in enumerate(zip(row, widths)):
            text = last[0] if index == len(row) - 1 else cell
            padding = " " * (width - len(text)) if index < len(row) - 1 else ""
            if colour and index in status_columns and raw[index] in _COLOURS:
                text = f"\033[{_COLOURS[raw[index]]}m{text}\033[0m"
            cells.append(text + padding)
        print("  ".join(cells).rstrip(), file=stream)
        for continuation in last[1:]:
            print(indent + continuation, file=stream)
