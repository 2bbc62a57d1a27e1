"""`tenants import`: many tenants from a CSV or JSON file, as an idempotent upsert with one outcome per row.

The file. CSV with a header row naming any of COLUMNS (tenantId and name required; `tags` separated by `;`), or JSON:
a list of objects with the same keys, or {"tenants": [...]}. Bounded before anything is parsed: at most MAX_BYTES
and MAX_ROWS rows (ImportFileError: the whole file is refused, nothing is written).

Each row, checked before anything is written (`plan`), gets one outcome: added, updated (the fields that change),
unchanged, or rejected with the reason — a bad GUID, a missing name, an unknown column, an unknown credential mode, a
tenant id already on an earlier line (the later one is rejected), a bad schedule, a value too long, … — in the
words of TenantConfig's own validation, so they read as `tenants add` says them. A value left out (an absent column
or key, an empty cell, null) keeps an existing tenant's value and takes `tenants add`'s default for a new tenant:
credential mode federated, the app's client id from AUTHWATCH_APP_CLIENT_ID, the managed identity's from
AZURE_CLIENT_ID, the fleet's schedule, no tags, enabled. Fields the file cannot name (exclusions, routing,
exceptions) are never touched.

Writing (`apply`): each good row is ONE registry write — `add` (atomic create) for a new tenant, `update` (an
ETag-guarded read-modify-write that merges the row's changes into the tenant as stored) for an existing one — so a
row is never half-written, and the rows are written WRITE_CONCURRENCY at a time. A write that fails is that row's
outcome (`failed: why`) and the others go on; running the same file again finishes the rest (they come out added,
the others unchanged). Import does not check a tenant's access: that is what `tenants add` is for.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shared.collect.credentials import MODES, CredentialError, CredentialSpec
from shared.tenants.config import RegistryError, TenantConfig, TenantExists, clean_error, tenant_key
from shared.tenants.registry import TenantRegistry

COLUMNS = ("tenantId", "name", "credentialMode", "clientId", "managedIdentityClientId", "secretSetting",
           "certificateSetting", "scheduleMinutes", "tags", "enabled")
REQUIRED = ("tenantId", "name")
CREDENTIAL_COLUMNS = {"credentialMode": "mode", "clientId": "clientId",
                      "managedIdentityClientId": "managedIdentityClientId", "secretSetting": "secretSetting",
                      "certificateSetting": "certificateSetting"}
MAX_BYTES = 20 * 1024 * 1024
MAX_ROWS = 50_000
MAX_VALUE_CHARS = 1024  # any one value, before its own check (the longest a field takes is a name of 256)
WRITE_CONCURRENCY = 16
OUTCOMES = ("added", "updated", "unchanged", "rejected", "failed")
_TRUE, _FALSE = ("true", "yes", "1", "y"), ("false", "no", "0", "n")
# What a changed field is called in the outcome line (the file's own column names).
_FIELD_NAMES = (("display_name", "name"), ("credential", "credential"), ("schedule_minutes", "scheduleMinutes"),
                ("tags", "tags"), ("enabled", "enabled"))


class ImportFileError(ValueError):
    """The file as a whole cannot be imported (unreadable, too big, a bad header): nothing is written."""


@dataclass(frozen=True)
class Row:
    where: str  # "line 7" (CSV, the header is line 1) or "item 3" (JSON, from 1)
    values: dict[str, Any]
    problem: str | None = None  # found while reading (extra cells, not an object)


@dataclass(frozen=True)
class Outcome:
    where: str
    tenant_id: str  # as validated, or as given when it is not a GUID ("-" when missing)
    outcome: str  # one of OUTCOMES
    fields: tuple[str, ...] = ()  # updated: what changes
    reason: str | None = None  # rejected / failed: why
    config: TenantConfig | None = field(default=None, compare=False, repr=False)  # what is written
    changes: dict[str, Any] | None = field(default=None, compare=False, repr=False)  # update: the JSON changes

    def text(self) -> str:
        detail = {"updated": f"updated (fields {', '.join(self.fields)})",
                  "rejected": f"rejected: {self.reason}", "failed": f"failed: {self.reason}"}
        return f"{self.where} {self.tenant_id}: {detail.get(self.outcome, self.outcome)}"

    def to_json(self) -> dict[str, Any]:
        return {"where": self.where, "tenantId": self.tenant_id, "outcome": self.outcome, "fields": list(self.fields),
                "reason": self.reason}


def summary(outcomes: Iterable[Outcome]) -> dict[str, int]:
    counts = dict.fromkeys(OUTCOMES, 0)
    for item in outcomes:
        counts[item.outcome] += 1
    return counts


def summary_text(counts: Mapping[str, int]) -> str:
    shown = [f"{counts[name]} {name}" for name in OUTCOMES[:4]]
    return ", ".join(shown + ([f"{counts['failed']} failed"] if counts.get("failed") else []))


# -- reading ----------------------------------------------------------------------------------------------------------

def read_file(path: str | Path) -> list[Row]:
    """The rows of a .csv or .json file; ImportFileError when it cannot be read as a whole."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".json"):
        raise ImportFileError(f"{path}: expected a .csv or .json file (the extension says which)")
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise ImportFileError(f"{path}: cannot be read ({error.strerror or error})") from None
    if len(raw) > MAX_BYTES:
        raise ImportFileError(f"{path} is larger than {MAX_BYTES // (1024 * 1024)} MiB: split it into smaller files")
    try:
        text = raw.decode("utf-8-sig")  # a spreadsheet's export may start with a byte order mark
    except UnicodeDecodeError as error:
        raise ImportFileError(f"{path}: not UTF-8 text (byte {error.start})") from None
    if suffix == ".csv":
        return read_csv(text)
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ImportFileError(f"{path}: not valid JSON ({error})") from None
    return read_json(data)


def read_csv(text: str) -> list[Row]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise ImportFileError(f"the file is empty: expected a header row naming {', '.join(REQUIRED)}")
        header = [name.strip() for name in header]
        _check_header(header)
        rows: list[Row] = []
        start = reader.line_num + 1
        for cells in reader:
            where, start = f"line {start}", reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue  # a blank line
            if len(rows) >= MAX_ROWS:
                raise ImportFileError(f"more than {MAX_ROWS:,} rows: split the file")
            values = {name: cell for name, cell in zip(header, cells)}
            problem = (f"{len(cells)} values, but the header names {len(header)} columns (unknown column "
                       f"{len(header) + 1})") if len(cells) > len(header) else None
            rows.append(Row(where, values, problem))
    except csv.Error as error:
        raise ImportFileError(f"line {reader.line_num}: not valid CSV ({error})") from None
    return rows


def _check_header(header: list[str]) -> None:
    unknown = [name for name in header if name not in COLUMNS]
    if unknown:
        raise ImportFileError(f"unknown column {unknown[0]!r} in the header (allowed: {', '.join(COLUMNS)})")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ImportFileError(f"column {repeated[0]!r} appears twice in the header")
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise ImportFileError(f"the header has no {missing[0]!r} column (required: {', '.join(REQUIRED)})")


def read_json(data: Any) -> list[Row]:
    """A list of objects, or {"tenants": [...]}, as rows; ImportFileError for any other shape."""
    if isinstance(data, dict) and set(data) == {"tenants"}:
        data = data["tenants"]
    if not isinstance(data, list):
        raise ImportFileError('expected a JSON list of tenants, or {"tenants": [...]}')
    if len(data) > MAX_ROWS:
        raise ImportFileError(f"{len(data):,} tenants: at most {MAX_ROWS:,} in one import, split it")
    rows = []
    for index, item in enumerate(data, 1):
        if isinstance(item, dict):
            unknown = sorted(str(key) for key in item if key not in COLUMNS)
            problem = (f"unknown column {unknown[0]!r} (allowed: {', '.join(COLUMNS)})" if unknown else None)
            rows.append(Row(f"item {index}", dict(item), problem))
        else:
            rows.append(Row(f"item {index}", {}, f"expected an object with {', '.join(REQUIRED)}, got "
                                                 f"{type(item).__name__}"))
    return rows


# -- checking ---------------------------------------------------------------------------------------------------------

def plan(rows: list[Row], existing: Mapping[str, TenantConfig], env: Mapping[str, str]) -> list[Outcome]:
    """Every row's outcome, nothing written: rejected ones with why; added / updated ones carry what to write."""
    first: dict[str, str] = {}
    outcomes = []
    for row in rows:
        shown = _shown_id(row.values.get("tenantId"))
        try:
            if row.problem:
                raise RegistryError(row.problem)
            key = _key(row.values.get("tenantId"))
            shown = key
            if key in first:
                raise RegistryError(f"tenantId: {key} is already on {first[key]} (the first one counts)")
            first[key] = row.where
            outcomes.append(_outcome(row, key, existing.get(key), env))
        except (RegistryError, CredentialError) as error:
            outcomes.append(Outcome(row.where, shown, "rejected", reason=_in_file_words(str(error))))
    return outcomes


def _outcome(row: Row, key: str, current: TenantConfig | None, env: Mapping[str, str]) -> Outcome:
    values = {name: _given(row.values.get(name), name) for name in COLUMNS}
    name = values["name"]
    if name is None:
        raise RegistryError("name: required (the tenant's display name)")
    credential = _credential(values, current, env)
    schedule = _minutes(values["scheduleMinutes"])
    tags = _tags(values["tags"])
    enabled = _enabled(values["enabled"])
    if current is None:
        config = TenantConfig(tenant_id=key, display_name=name, credential=credential, schedule_minutes=schedule,
                              tags=tags or (), enabled=True if enabled is None else enabled)
        return Outcome(row.where, key, "added", config=config)
    config = replace(current, display_name=name, credential=credential,
                     schedule_minutes=current.schedule_minutes if schedule is None else schedule,
                     tags=current.tags if tags is None else tags,
                     enabled=current.enabled if enabled is None else enabled)
    changed = tuple(label for python, label in _FIELD_NAMES if getattr(config, python) != getattr(current, python))
    if not changed:
        return Outcome(row.where, key, "unchanged")
    data = config.to_json()
    changes = {json_name: data[json_name] for json_name in ("displayName", "credential", "scheduleMinutes", "tags",
                                                            "enabled")
               if getattr(config, _PYTHON[json_name]) != getattr(current, _PYTHON[json_name])}
    return Outcome(row.where, key, "updated", fields=changed, config=config, changes=changes)


_PYTHON = {"displayName": "display_name", "credential": "credential", "scheduleMinutes": "schedule_minutes",
           "tags": "tags", "enabled": "enabled"}


def _key(raw: Any) -> str:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise RegistryError("tenantId: required (the tenant's id, a GUID)")
    return tenant_key(raw.strip() if isinstance(raw, str) else raw)


def _shown_id(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        return "-"
    text = " ".join(raw.split())
    return text if len(text) <= 40 else text[:39] + "…"


def _given(value: Any, name: str) -> Any:
    """A cell or key as given: None when left out (empty, null); strings trimmed and bounded."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > MAX_VALUE_CHARS:
            raise RegistryError(f"{name}: value too long ({len(value):,} characters; at most {MAX_VALUE_CHARS:,})")
        value = value.strip()
        return value or None
    if name in ("scheduleMinutes", "enabled", "tags"):
        return value  # JSON's own number, boolean, list: checked by the field's reader
    raise RegistryError(f"{name}: expected text, got {type(value).__name__}")


def _credential(values: Mapping[str, Any], current: TenantConfig | None, env: Mapping[str, str]) -> CredentialSpec:
    given = {CREDENTIAL_COLUMNS[column]: values[column] for column in CREDENTIAL_COLUMNS if values[column] is not None}
    mode = given.get("mode")
    if mode is not None and mode not in MODES:
        raise RegistryError(f"credentialMode: {_short(mode)} is not one of {', '.join(MODES)}")
    if current is not None and mode in (None, current.credential.mode):
        data = {**current.credential.to_json(), **given}  # same mode: what the file gives over what is stored
    else:
        mode = mode or "federated"  # `tenants add`'s default, and the recommended mode
        data = {**given, "mode": mode}
        data.setdefault("clientId", env.get("AUTHWATCH_APP_CLIENT_ID"))
        if not data["clientId"]:
            raise RegistryError("clientId: empty, and AUTHWATCH_APP_CLIENT_ID is not set (the app registration's "
                                "client id)")
        if mode == "federated":
            data.setdefault("managedIdentityClientId", env.get("AZURE_CLIENT_ID"))
            if not data["managedIdentityClientId"]:
                raise RegistryError("managedIdentityClientId: empty, and AZURE_CLIENT_ID is not set (federated mode "
                                    "needs the managed identity's client id)")
    return CredentialSpec.from_json(data)


def _minutes(value: Any) -> int | None:
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        return int(value)  # TenantConfig checks the range
    raise RegistryError(f"scheduleMinutes: expected whole minutes, got {_short(value)}")


def _tags(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return tuple(tag.strip() for tag in value.split(";") if tag.strip())
    if isinstance(value, list):
        return tuple(value)  # TenantConfig checks each
    raise RegistryError(f"tags: expected tags separated by ';' (or a JSON list), got {type(value).__name__}")


def _enabled(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _TRUE + _FALSE:
        return value.lower() in _TRUE
    raise RegistryError(f"enabled: expected true or false, got {_short(value)}")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _in_file_words(message: str) -> str:
    """A validation message with the file's column names (TenantConfig says displayName, the credential mode)."""
    for ours, theirs in (("displayName:", "name:"), ("credential.mode:", "credentialMode:"),
                         ("mode:", "credentialMode:"), ("credential.", "")):
        if message.startswith(ours):
            return theirs + message[len(ours):]
    return message


# -- writing ----------------------------------------------------------------------------------------------------------

async def apply(registry: TenantRegistry, outcomes: list[Outcome], *, concurrency: int = WRITE_CONCURRENCY,
                progress: Callable[[int, int], None] | None = None) -> list[Outcome]:
    """Write the added and updated rows, `concurrency` at a time; a failed write becomes that row's outcome."""
    writes = [index for index, item in enumerate(outcomes) if item.outcome in ("added", "updated")]
    result = list(outcomes)
    gate = asyncio.Semaphore(concurrency)
    done = 0

    async def write(index: int) -> None:
        nonlocal done
        item = outcomes[index]
        async with gate:
            try:
                if item.outcome == "added":
                    await registry.add(item.config)  # type: ignore[arg-type]
                else:
                    await registry.update(item.tenant_id, dict(item.changes or {}))
            except TenantExists:
                result[index] = replace(item, outcome="failed", reason="registered meanwhile by someone else; run "
                                                                       "the import again to compare with it")
            except LookupError:
                result[index] = replace(item, outcome="failed", reason="removed meanwhile; run the import again "
                                                                       "to add it")
            except Exception as error:  # noqa: BLE001 - one row's failure is its outcome; the others go on
                result[index] = replace(item, outcome="failed",
                                        reason=clean_error(f"{type(error).__name__}: {error}") or "write failed")
        done += 1
        if progress is not None:
            progress(done, len(writes))

    await asyncio.gather(*(write(index) for index in writes))
    return result


async def import_rows(registry: TenantRegistry, rows: list[Row], env: Mapping[str, str], *, dry_run: bool = False,
                      progress: Callable[[int, int], None] | None = None) -> list[Outcome]:
    """Check every row against the registry as it is (one query), then write the good ones unless `dry_run`."""
    existing = {config.tenant_id: config for config in await registry.list()}
    outcomes = plan(rows, existing, env)
    return outcomes if dry_run else await apply(registry, outcomes, progress=progress)
