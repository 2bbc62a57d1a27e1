"""What every control is made of: metadata kept as data, a pure check function, and a registry that finds them.

A control module is named by its control id and declares `METADATA` (a `ControlMetadata`) and
`check(snapshot, context)`;
`@register` ties the two together and refuses a module whose name disagrees with the id (the Prowler discipline).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from shared.model import ControlResult, EvaluationContext, Severity, Status, TenantSnapshot

CheckFunction = Callable[[TenantSnapshot, EvaluationContext], ControlResult]


@dataclass(frozen=True)
class ControlMetadata:
    id: str
    title: str
    severity: Severity
    frameworks: tuple[str, ...]
    sources: tuple[str, ...]  # snapshot sources the control reads, e.g. "graph.securityDefaults"
    permissions: tuple[str, ...]  # what the collector needs to fetch those sources
    remediation: str
    label: str = ""  # a column header's worth of title, for tables with one column per control

    def result(self, status: Status, summary: str, evidence: dict[str, Any] | None = None,
               remediation: str | None = None) -> ControlResult:
        """A verdict carrying this control's identity; remediation defaults to the catalogue text."""
        return ControlResult(
            control=self.id,
            status=status,
            severity=self.severity,
            summary=summary,
            evidence=evidence or {},
            frameworks=self.frameworks,
            remediation=self.remediation if remediation is None else remediation,
        )


@dataclass(frozen=True)
class Control:
    metadata: ControlMetadata
    check: CheckFunction
    module: str

    @property
    def id(self) -> str:
        return self.metadata.id


_REGISTRY: dict[str, Control] = {}


def register(metadata: ControlMetadata) -> Callable[[CheckFunction], CheckFunction]:
    def decorate(check: CheckFunction) -> CheckFunction:
        module = check.__module__.rsplit(".", 1)[-1]
        if module != metadata.id:
            raise ValueError(f"control {metadata.id!r} must live in a module of the same name, not {module!r}")
        if metadata.id in _REGISTRY and _REGISTRY[metadata.id].check is not check:
            raise ValueError(f"control {metadata.id!r} registered twice")
        _REGISTRY[metadata.id] = Control(metadata=metadata, check=check, module=check.__module__)
        return check

    return decorate


def registered() -> dict[str, Control]:
    return dict(_REGISTRY)


def as_bool(value: Any) -> bool | None:
    """Exchange answers booleans as true/false or as the strings "True"/"False"; anything else is unknown."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return None


def as_list(value: Any) -> list[Any]:
    """A list from Microsoft data, or an empty one for null. Callers that must tell "missing" apart check first."""
    return value if isinstance(value, list) else []


def as_strings(value: Any) -> list[str]:
    return [item for item in as_list(value) if isinstance(item, str)]


def first_object(value: Any) -> dict[str, Any] | None:
    """Exchange's Get-* cmdlets answer a list even for singletons; accept the object or a one-item list."""
    if isinstance(value, dict):
        return value
    if isinstance(value, list) and value and isinstance(value[0], dict):
        return value[0]
    return None


def not_collected(metadata: ControlMetadata, snapshot: TenantSnapshot, source: str) -> ControlResult:
    """The `unknown` verdict for a source that is missing or failed, naming why."""
    error = snapshot.error(source)
    if error:
        # A code like "HTTP403" only repeats the status; Microsoft's own codes are worth showing.
        code = "" if error.code.startswith("HTTP") else error.code
        reason = " ".join(part for part in (str(error.status or ""), code) if part)
        reason += f": {error.message}" if error.message else ""
    else:
        reason = "not present in the snapshot"
    return metadata.result(
        Status.UNKNOWN,
        f"Cannot evaluate: {source} was not collected ({reason}).",
        {"missingSource": source, "error": error.to_json() if error else None},
    )
