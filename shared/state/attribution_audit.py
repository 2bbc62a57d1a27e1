"""Who changed an Exchange or SharePoint protection, from Microsoft Purview audit records (pure).

authwatch sees a change (SMTP AUTH re-enabled, a policy that allows Basic again…) when it compares two snapshots,
within an observation interval (since, seen_at]. Who made it is in the unified audit log, read through the Graph audit
log query API (shared/collect/audit_query.py) in a later cycle: records arrive "typically 60 to 90 minutes after an
event occurs" for Exchange and SharePoint, and Microsoft "doesn't guarantee a specific time"
(https://learn.microsoft.com/en-us/purview/audit-log-search). So attribution is allowed to say "not yet known" (None)
and must never say a wrong name: every rule below that cannot decide returns None.

What a record holds: the Graph auditLogRecord (operation, userPrincipalName, userId, userType, objectId, auditData;
https://learn.microsoft.com/en-us/graph/api/resources/security-auditlogrecord) whose auditData is the raw unified
audit record; for Exchange admin records, `Operation` is the cmdlet and `Parameters` the [{Name, Value}] it was run
with, `ObjectId` / `ModifiedObjectResolvedName` the object it changed, `ResultStatus` True/False
(https://learn.microsoft.com/en-us/office/office-365-management-api/office-365-management-activity-api-schema#exchange-admin-schema).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from shared.model import format_time, parse_time_or_none

SOURCE = "auditLogQuery"
MICROSOFT = "Microsoft (service)"

EXCHANGE_ADMIN = "exchangeAdmin"  # auditLogRecordType values (security-auditlogrecord above)
SHAREPOINT = "sharePoint"
# Office 365 Management Activity API AuditLogRecordType numbers, as auditData.RecordType carries them
# (management-activity-api-schema#auditlogrecordtype): 1 ExchangeAdmin, 4 SharePoint.
_RECORD_TYPE_NUMBERS = {EXCHANGE_ADMIN.lower(): 1, SHAREPOINT.lower(): 4}

ALLOW_BASIC_AUTH = tuple(f"AllowBasicAuth{protocol}" for protocol in (
    "ActiveSync", "Autodiscover", "Imap", "Mapi", "OfflineAddressBook", "OutlookService", "Pop", "Powershell",
    "ReportingWebServices", "Rpc", "Smtp", "WebServices"))


@dataclass(frozen=True)
class ChangeKind:
    """One kind of setting authwatch watches, and how the unified audit log records a change to it."""

    name: str
    record_type: str  # auditLogRecordType of the records that change it
    operations: tuple[str, ...]  # the cmdlets (Exchange: Operation is "the name of the cmdlet that was run"); () = any
    parameters: tuple[str, ...]  # the parameters (Exchange) / modified properties (SharePoint) that set it
    per_object: bool  # True: a record counts only for the object it names (a mailbox, a policy, a user)
    keyword: str | None = None  # keywordFilter for a query that cannot filter on operations


KINDS: dict[str, ChangeKind] = {kind.name: kind for kind in (
    ChangeKind("transportSmtpAuth", EXCHANGE_ADMIN, ("Set-TransportConfig",), ("SmtpClientAuthenticationDisabled",),
               per_object=False),
    ChangeKind("mailboxSmtpAuth", EXCHANGE_ADMIN, ("Set-CASMailbox",), ("SmtpClientAuthenticationDisabled",),
               per_object=True),
    ChangeKind("mailboxProtocols", EXCHANGE_ADMIN, ("Set-CASMailbox",), ("PopEnabled", "ImapEnabled",
                                                                         "ActiveSyncEnabled"), per_object=True),
    ChangeKind("authenticationPolicy", EXCHANGE_ADMIN, ("Set-AuthenticationPolicy", "New-AuthenticationPolicy"),
               ALLOW_BASIC_AUTH, per_object=True),
    ChangeKind("userAuthenticationPolicy", EXCHANGE_ADMIN, ("Set-User",), ("AuthenticationPolicy",), per_object=True),
    ChangeKind("defaultAuthenticationPolicy", EXCHANGE_ADMIN, ("Set-OrganizationConfig",),
               ("DefaultAuthenticationPolicy",), per_object=False),
    ChangeKind("casMailboxPlan", EXCHANGE_ADMIN, ("Set-CASMailboxPlan",), ("PopEnabled", "ImapEnabled",
                                                                           "ActiveSyncEnabled"), per_object=True),
    # Microsoft documents no operation name for the SharePoint legacy-protocols switch (Set-SPOTenant
    # -LegacyAuthProtocolsEnabled, or Graph's admin/sharepoint/settings): the record is found by the property it
    # modified, and the query by keyword ("Free text field to search non-indexed properties of the audit log",
    # https://learn.microsoft.com/en-us/graph/api/security-auditcoreroot-post-auditlogqueries). Unconfirmed.
    ChangeKind("sharepointLegacyAuth", SHAREPOINT, (), ("LegacyAuthProtocolsEnabled", "IsLegacyAuthProtocolsEnabled"),
               per_object=False, keyword="LegacyAuthProtocolsEnabled"),
)}

ANY = object()  # an expected value that is not checked


@dataclass(frozen=True)
class ObservedChange:
    """A change authwatch saw: what, on which object (every name it goes by: Identity, Name, PrimarySmtpAddress,
    UserPrincipalName, ExternalDirectoryObjectId…), inside (since, seen_at]. `settings` names the parameters that
    changed and the value authwatch now sees (ANY: not checked); empty = every parameter of the kind, unchecked."""

    kind: str
    seen_at: datetime
    since: datetime | None = None
    object_ids: tuple[str, ...] = ()
    settings: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class QueryPlan:
    """One audit log query: what shared/collect/audit_query.QueryFilters needs."""

    record_types: tuple[str, ...]
    operations: tuple[str, ...]
    start: datetime
    end: datetime
    keyword: str | None = None


MAX_PARAMETERS = 16  # the attribution keeps at most this many parameters…
MAX_VALUE = 200  # …each value cut to this many characters
# A first look has no `since`: the audit log query still needs a start; Audit (Standard) keeps 180 days, a change
# authwatch could not have seen before its first snapshot is looked for this far back.
DEFAULT_LOOKBACK = timedelta(days=2)
# Documented UserType values that are Microsoft itself: 3 DcAdmin "A Microsoft datacenter operator", 4 System "A
# system account", 8 SystemPolicy "A system policy"; 5 Application and 6 ServicePrincipal are apps
# (management-activity-api-schema#enum-user-type---type-edmint32). Graph spells them as strings (regular, reserved,
# admin, dcAdmin, system, application, servicePrincipal, customPolicy, systemPolicy, partnerTechnician, guest).
_MICROSOFT_TYPES = {"dcadmin", "system", "systempolicy", "3", "4", "8"}
_APP_TYPES = {"application", "serviceprincipal", "5", "6"}
# "records for activity performed by system accounts (such as SHAREPOINT\system or NT AUTHORITY\SYSTEM)" (common
# schema, UserId); Exchange writes e.g. "NT AUTHORITY\SYSTEM (Microsoft.Exchange.ServiceHost)".
_SYSTEM_ACCOUNT = re.compile(r"^\s*(NT AUTHORITY\\SYSTEM|SHAREPOINT\\system)\b", re.IGNORECASE)


def kinds_for(changes: Iterable[ObservedChange]) -> list[ChangeKind]:
    names = sorted({change.kind for change in changes})
    unknown = [name for name in names if name not in KINDS]
    if unknown:
        raise KeyError(f"unknown change kind(s) {unknown}; known: {sorted(KINDS)}")
    return [KINDS[name] for name in names]


def query_plans(changes: Iterable[ObservedChange], lookback: timedelta = DEFAULT_LOOKBACK) -> list[QueryPlan]:
    """The queries that cover every pending change of one tenant: one for the Exchange cmdlets (record type
    exchangeAdmin, their operations) and, when SharePoint changed, one by keyword (its operation is not
    documented, and a query's keyword would also narrow the Exchange records). Spanning the earliest `since` to the
    latest `seen_at`."""
    pending = list(changes)
    kinds_for(pending)
    plans: list[QueryPlan] = []
    for record_type in (EXCHANGE_ADMIN, SHAREPOINT):
        mine = [change for change in pending if KINDS[change.kind].record_type == record_type]
        if not mine:
            continue
        start = min(change.since or change.seen_at - lookback for change in mine)
        end = max(change.seen_at for change in mine)
        operations = tuple(sorted({op for change in mine for op in KINDS[change.kind].operations}))
        keywords = sorted({KINDS[change.kind].keyword for change in mine if KINDS[change.kind].keyword})
        plans.append(QueryPlan((record_type,), operations, start, end, keywords[0] if keywords else None))
    return plans


# -- reading one record ------------------------------------------------------------------------------------------
def _audit_data(record: Mapping[str, Any]) -> Mapping[str, Any]:
    data = record.get("auditData")
    return data if isinstance(data, Mapping) else {}


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value))


def _record_type_matches(record: Mapping[str, Any], wanted: str) -> bool:
    given = _text(record.get("auditLogRecordType"))
    if given:
        return given.lower() == wanted.lower()
    number = _audit_data(record).get("RecordType")
    return number is not None and _text(number) == str(_RECORD_TYPE_NUMBERS.get(wanted.lower()))


def _operation(record: Mapping[str, Any]) -> str:
    return _text(record.get("operation")) or _text(_audit_data(record).get("Operation"))


def _moment(record: Mapping[str, Any]) -> datetime | None:
    return parse_time_or_none(record.get("createdDateTime")) or parse_time_or_none(
        _audit_data(record).get("CreationTime"))


def _failed(record: Mapping[str, Any]) -> bool:
    """A cmdlet that failed changed nothing: Exchange writes ResultStatus True/False, others Succeeded/Failed."""
    status = _text(_audit_data(record).get("ResultStatus")).lower()
    return status in {"false", "failed"}


def _settings_in(record: Mapping[str, Any], kind: ChangeKind) -> dict[str, Any]:
    """name (lower-case) -> (name, value) of what the record set: Exchange `Parameters` [{Name, Value}], SharePoint
    `ModifiedProperties` [{Name, NewValue, OldValue}]."""
    data = _audit_data(record)
    found: dict[str, Any] = {}
    entries = data.get("Parameters") if kind.record_type == EXCHANGE_ADMIN else data.get("ModifiedProperties")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, Mapping) or not _text(entry.get("Name")):
            continue
        value = entry.get("Value") if kind.record_type == EXCHANGE_ADMIN else entry.get("NewValue")
        found.setdefault(_text(entry.get("Name")).lower(), (_text(entry.get("Name")), value))
    return found


def _normal(value: Any) -> Any:
    """Exchange logs parameter values as text ("False", "$false", "True", "$null"): compare them as values."""
    if isinstance(value, bool) or value is None:
        return value
    text = _text(value).lower()
    if text in {"true", "$true"}:
        return True
    if text in {"false", "$false"}:
        return False
    if text in {"", "$null", "null"}:
        return None
    return text


def _names_of_object(record: Mapping[str, Any], params: Mapping[str, Any]) -> set[str]:
    data = _audit_data(record)
    names = [record.get("objectId"), data.get("ObjectId"), data.get("ModifiedObjectResolvedName")]
    names += [params[key][1] for key in ("identity", "name") if key in params]  # New-AuthenticationPolicy -Name
    out: set[str] = set()
    for name in names:
        text = _text(name).lower()
        if text:
            out.add(text)
            # Exchange often logs a DN-like path ("…/contoso.onmicrosoft.com/Jane Doe"): its last part is the name.
            out.add(re.split(r"[/\\]", text)[-1].strip())
    out.discard("")
    return out


def _actor(record: Mapping[str, Any]) -> tuple[str | None, bool]:
    data = _audit_data(record)
    user_type = _text(record.get("userType")).lower() or _text(data.get("UserType")).lower()
    user_id = _text(record.get("userId")) or _text(data.get("UserId"))
    if user_type in _MICROSOFT_TYPES or (not user_type and _SYSTEM_ACCOUNT.match(user_id)):
        return MICROSOFT, True
    if _SYSTEM_ACCOUNT.match(user_id):
        return None, False  # a system account with a person's or an app's user type: contradictory, not guessed
    if user_type in _APP_TYPES:
        app = _text(data.get("AppId")) or user_id
        return (f"app {app}" if app else None), False
    return (_text(record.get("userPrincipalName")) or user_id or None), False


# -- the attribution ---------------------------------------------------------------------------------------------
def attribute(change: ObservedChange, records: Iterable[Any]) -> dict[str, Any] | None:
    """The newest record inside (since, seen_at] that ran the kind's cmdlet on the object and set one of the changed
    parameters, as {"changedBy", "changedAt", "cmdlet", "parameters", "byMicrosoft", "source"}; None when no record
    matches or the answer is not certain: the newest relevant record set a value other than the one seen now (the
    record of the last change has not arrived yet), two records tie at the newest moment with different actors, or
    it names no actor."""
    kind = KINDS[change.kind]
    wanted = {name.lower(): value for name, value in change.settings.items()} or {
        name.lower(): ANY for name in kind.parameters}
    if not set(wanted) <= {name.lower() for name in kind.parameters}:
        raise ValueError(f"{kind.name}: settings {sorted(change.settings)} are not among {list(kind.parameters)}")
    operations = {op.lower() for op in kind.operations}
    aliases = {_text(name).lower() for name in change.object_ids if _text(name)}
    if kind.per_object and not aliases:
        return None  # the object is not named: no record can be said to be about it
    relevant: list[tuple[datetime, Mapping[str, Any], dict[str, Any]]] = []
    for record in records:
        if not isinstance(record, Mapping) or not _record_type_matches(record, kind.record_type):
            continue
        if operations and _operation(record).lower() not in operations:
            continue
        moment = _moment(record)
        if moment is None or moment > change.seen_at or (change.since is not None and moment <= change.since):
            continue
        params = _settings_in(record, kind)
        touched = {name: params[name] for name in wanted if name in params}
        if not touched or _failed(record):
            continue
        if kind.per_object and not aliases & _names_of_object(record, params):
            continue
        relevant.append((moment, record, touched))
    if not relevant:
        return None
    newest = max(moment for moment, _, _ in relevant)
    latest = [(record, touched) for moment, record, touched in relevant if moment == newest]
    actors = {_actor(record) for record, _ in latest}
    if len(actors) != 1:
        return None
    (changed_by, by_microsoft), = actors
    for _, touched in latest:
        for name, (_, value) in touched.items():
            if wanted[name] is not ANY and _normal(value) != _normal(wanted[name]):
                return None  # the last record we have set something else: the one for the state seen now is not in
    if changed_by is None:
        return None
    record, touched = latest[0]
    parameters = {original: _bounded(value) for original, value in list(touched.values())[:MAX_PARAMETERS]}
    return {"changedBy": changed_by, "changedAt": format_time(newest), "cmdlet": _operation(record) or None,
            "parameters": parameters, "byMicrosoft": by_microsoft, "source": SOURCE}


def _bounded(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    text = _text(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"
