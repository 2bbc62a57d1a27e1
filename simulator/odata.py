"""The small OData subset Graph's audit-log endpoints need: ``$filter``, ``$select``, ``$skiptoken``.

The ``$filter`` parser accepts only ``<field> <op> <literal>`` clauses joined by ``and`` and only the
fields/operators declared per collection. Anything else is a 400, deliberately: a client bug such
as quoting a date, using ``or`` or filtering on an unsupported property must show up in tests
rather than silently return everything.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .scenario import parse_datetime


class ODataError(ValueError):
    """Invalid query option; the message goes into a 400 BadRequest body."""


@dataclass(frozen=True)
class Clause:
    field: str  # canonical property name
    op: str  # eq | ge | gt | le | lt
    value: datetime | str


_CLAUSE_RE = re.compile(
    r"\s*(?P<field>[A-Za-z_][A-Za-z0-9_]*)\s+(?P<op>[A-Za-z]+)\s+"
    r"(?P<value>'(?:[^']|'')*'|[^\s']+)\s*"
)
_AND_RE = re.compile(r"and\b", re.IGNORECASE)
_DATE_OPS = {"eq", "ge", "gt", "le", "lt"}


def parse_filter(text: str, fields: dict[str, str]) -> list[Clause]:
    """Parse ``text``; ``fields`` maps a property name to its kind: ``"datetime"`` or ``"string"``.

    String properties support ``eq`` only (as Graph's sign-in log does); date-times support
    ``eq/ge/gt/le/lt`` with an unquoted ISO 8601 literal.
    """
    by_lower = {name.lower(): (name, kind) for name, kind in fields.items()}
    clauses: list[Clause] = []
    pos = 0
    text = text.strip()
    if not text:
        raise ODataError("Invalid filter clause: the $filter expression is empty.")
    while True:
        m = _CLAUSE_RE.match(text, pos)
        if not m:
            raise ODataError(f"Invalid filter clause: syntax error at position {pos} in '{text}'.")
        raw_field, op, raw_value = m.group("field"), m.group("op").lower(), m.group("value")
        if raw_field.lower() not in by_lower:
            raise ODataError(
                f"Invalid filter clause: filtering on '{raw_field}' is not supported "
                f"(supported: {', '.join(fields)}).")
        name, kind = by_lower[raw_field.lower()]
        if kind == "datetime":
            if op not in _DATE_OPS:
                raise ODataError(f"Invalid filter clause: operator '{op}' is not supported for '{name}'.")
            if raw_value.startswith("'"):
                raise ODataError(
                    f"Invalid filter clause: a value of type 'Edm.String' cannot be compared with '{name}' "
                    "(Edm.DateTimeOffset); write the date-time without quotes.")
            try:
                value: datetime | str = parse_datetime(raw_value)
            except ValueError:
                raise ODataError(f"Invalid filter clause: '{raw_value}' is not a valid DateTimeOffset.") from None
        else:
            if op != "eq":
                raise ODataError(f"Invalid filter clause: operator '{op}' is not supported for '{name}' (eq only).")
            if not raw_value.startswith("'"):
                raise ODataError(f"Invalid filter clause: '{name}' must be compared with a quoted string.")
            value = raw_value[1:-1].replace("''", "'")
        clauses.append(Clause(name, op, value))
        pos = m.end()
        if pos >= len(text):
            return clauses
        a = _AND_RE.match(text, pos)
        if not a:
            rest = text[pos:].split()[0] if text[pos:].split() else text[pos:]
            raise ODataError(f"Invalid filter clause: '{rest}' is not supported (only 'and' joins clauses).")
        pos = a.end()


def matches(record: dict[str, Any], clauses: list[Clause], parsed_dates: dict[str, datetime]) -> bool:
    """True when ``record`` satisfies every clause. String compares are case-insensitive, as in Graph."""
    for c in clauses:
        if isinstance(c.value, datetime):
            have = parsed_dates.get(c.field)
            if have is None:
                return False
            ok = {"eq": have == c.value, "ge": have >= c.value, "gt": have > c.value,
                  "le": have <= c.value, "lt": have < c.value}[c.op]
        else:
            val = record.get(c.field)
            ok = isinstance(val, str) and val.casefold() == c.value.casefold()
        if not ok:
            return False
    return True


def select(obj: dict[str, Any], fields: list[str] | None) -> dict[str, Any]:
    """Project ``obj`` on ``fields`` (case-insensitive); ``@odata.*`` annotations are kept."""
    if not fields:
        return obj
    wanted = {f.lower() for f in fields}
    return {k: v for k, v in obj.items()
            if k.lower() in wanted or k.startswith("@odata.") or k.split("@", 1)[0].lower() in wanted}


def parse_select(value: str | None) -> list[str] | None:
    if value is None:
        return None
    fields = [f.strip() for f in value.split(",") if f.strip()]
    for f in fields:
        if not re.fullmatch(r"[A-Za-z_@.][A-Za-z0-9_@.]*", f):
            raise ODataError(f"Invalid $select: '{f}' is not a property name.")
    return fields or None


def encode_skiptoken(offset: int, scope: str) -> str:
    """Opaque paging cursor; ``scope`` ties it to the collection so a token cannot be replayed elsewhere."""
    raw = json.dumps({"o": offset, "s": scope}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_skiptoken(token: str, scope: str) -> int:
    try:
        data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        offset = int(data["o"])
        ok = data.get("s") == scope and offset >= 0
    except (ValueError, KeyError, TypeError):
        ok = False
    if not ok:
        raise ODataError("Invalid $skiptoken: it was not issued for this request.")
    return offset


def page_size(call: Any, default: int, cap: int) -> int:
    """The page size a request asks for with $top (OData; a bad value is Graph's 400), else `default`, at most
    `cap` (Graph's own maximum for the collection)."""
    size = default
    if "$top" in call.query:
        try:
            size = int(call.query["$top"])
        except ValueError:
            raise ODataError(f"Invalid value '{call.query['$top']}' for $top: an integer is required.") from None
        if size < 1:
            raise ODataError("Invalid value for $top: it must be a positive integer.")
    return min(size, cap)
