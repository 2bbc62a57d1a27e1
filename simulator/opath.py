"""A tiny evaluator for Exchange OPATH ``-Filter`` strings.

Supported, because it is what a legacy-auth monitor needs to ask only for mailboxes that matter:
``Prop -eq|-ne $true|$false|$null|'text'``, joined with ``-and`` / ``-or`` (``-and`` binds tighter),
optional parentheses and an optional surrounding ``{ }``. Anything else raises FilterError, which
the simulator answers with a 400 so a client bug is visible instead of silently matching everything.

Exchange treats a blank (``$null``) property as distinct from ``$false``: ``SmtpClientAuthenticationDisabled
-eq $false`` does not match a mailbox that inherits the organisation setting. Scenario data may use
JSON booleans or the strings "True"/"False"; both compare as booleans.
"""
from __future__ import annotations

import re
from typing import Any, Callable

Predicate = Callable[[dict[str, Any]], bool]

_TOKEN_RE = re.compile(
    r"\s*(?:(?P<lp>\()|(?P<rp>\))|(?P<op>-[A-Za-z]+)|(?P<var>\$[A-Za-z]+)"
    r"|(?P<str>'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\")|(?P<name>[A-Za-z_][A-Za-z0-9_]*))"
)
_CONSTANTS = {"$true": True, "$false": False, "$null": None}


class FilterError(ValueError):
    pass


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if not m or m.end() == pos:
            raise FilterError(f"Invalid filter syntax at position {pos}: '{text[pos:pos + 20]}'.")
        kind = m.lastgroup or ""
        tokens.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return tokens


def normalize(value: Any) -> Any:
    """Booleans may be stored as JSON booleans or "True"/"False" strings; blanks are $null."""
    if isinstance(value, str):
        low = value.strip().lower()
        if low == "true":
            return True
        if low == "false":
            return False
        if low == "":
            return None
    return value


def compile_filter(text: str, known: set[str]) -> Predicate:
    """Compile ``text`` into a predicate over cmdlet result objects; ``known`` = filterable properties."""
    tokens = _tokenize(text)
    if not tokens:
        raise FilterError("The filter is empty.")
    by_lower = {k.lower(): k for k in known}
    pos = 0

    def peek() -> tuple[str, str] | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal pos
        if pos >= len(tokens):
            raise FilterError("Unexpected end of filter.")
        tok = tokens[pos]
        pos += 1
        return tok

    def parse_or() -> Predicate:
        left = parse_and()
        while (t := peek()) and t[0] == "op" and t[1].lower() == "-or":
            take()
            right = parse_and()
            left = (lambda a, b: lambda o: a(o) or b(o))(left, right)
        return left

    def parse_and() -> Predicate:
        left = parse_atom()
        while (t := peek()) and t[0] == "op" and t[1].lower() == "-and":
            take()
            right = parse_atom()
            left = (lambda a, b: lambda o: a(o) and b(o))(left, right)
        return left

    def parse_atom() -> Predicate:
        kind, val = take()
        if kind == "lp":
            inner = parse_or()
            if take()[0] != "rp":
                raise FilterError("Missing ')' in filter.")
            return inner
        if kind != "name":
            raise FilterError(f"Expected a property name, found '{val}'.")
        prop = by_lower.get(val.lower())
        if prop is None:
            raise FilterError(f"'{val}' is not a recognized filterable property.")
        okind, op = take()
        if okind != "op" or op.lower() not in ("-eq", "-ne"):
            raise FilterError(f"Operator '{op}' is not supported by the simulator (use -eq or -ne).")
        vkind, raw = take()
        if vkind == "var":
            if raw.lower() not in _CONSTANTS:
                raise FilterError(f"Variable '{raw}' is not supported (use $true, $false or $null).")
            want: Any = _CONSTANTS[raw.lower()]
        elif vkind == "str":
            want = raw[1:-1].replace(raw[0] * 2, raw[0])
        else:
            raise FilterError(f"Expected $true, $false, $null or a quoted string after {op}, found '{raw}'.")
        negate = op.lower() == "-ne"

        def pred(obj: dict[str, Any]) -> bool:
            have = normalize(_get_ci(obj, prop))
            if isinstance(want, str):
                same = isinstance(have, str) and have.casefold() == want.casefold()
            else:
                same = have is want
            return same != negate
        return pred

    result = parse_or()
    if pos != len(tokens):
        raise FilterError(f"Unexpected '{tokens[pos][1]}' in filter (only -and / -or join comparisons).")
    return result


def _get_ci(obj: dict[str, Any], prop: str) -> Any:
    if prop in obj:
        return obj[prop]
    low = prop.lower()
    for k, v in obj.items():
        if k.lower() == low:
            return v
    return None
