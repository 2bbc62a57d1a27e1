"""The shape shared by every control that reads one yes/no setting: true is safe (or unsafe), false the reverse,
anything else proves nothing and answers `unknown` — never a guess (controls.md §3, §7, §8)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from shared.controls.base import ControlMetadata, as_bool, first_object, not_collected
from shared.model import ControlResult, Status, TenantSnapshot


@dataclass(frozen=True)
class SettingFlag:
    source: str  # snapshot source, e.g. "exchange.transportConfig"
    field: str  # the boolean property, e.g. "SmtpClientAuthenticationDisabled"
    where: str  # how a person names the place, e.g. "transport config"
    safe_value: bool  # the value that keeps legacy authentication shut
    question: str  # "whether SMTP AUTH is disabled" — completes "Cannot tell …"
    passed: str  # summary when safe
    failed: str  # summary when unsafe
    read: Callable[[Any], dict[str, Any] | None] = first_object  # the object holding the field
    identity: tuple[str, ...] = ()  # fields naming the resource, copied into the evidence

    def check(self, metadata: ControlMetadata, snapshot: TenantSnapshot) -> ControlResult:
        if not snapshot.collected(self.source):
            return not_collected(metadata, snapshot, self.source)
        raw_object = snapshot.get(self.source)
        holder = self.read(raw_object)
        if holder is None:
            return metadata.result(
                Status.UNKNOWN,
                f"Cannot tell {self.question}: {self.source} is {type(raw_object).__name__}, expected an object.",
                {"unreadableSource": self.source},
            )
        raw = holder.get(self.field)
        evidence: dict[str, Any] = {self.field: raw}
        for name in self.identity:
            if holder.get(name) is not None:
                evidence[name] = holder.get(name)
        value = as_bool(raw)
        if value is None:
            state = "missing" if self.field not in holder else repr(raw)
            return metadata.result(Status.UNKNOWN, f"Cannot tell {self.question}: {self.where} {self.field} is {state}.",
                                   evidence)
        # Say the value the way its own API spells it: Graph writes true/false, Exchange True/False.
        shown = f"({self.where} {self.field} is {str(value).lower() if self.source.startswith('graph.') else value})"
        if value == self.safe_value:
            return metadata.result(Status.PASS, f"{self.passed} {shown}.", evidence)
        return metadata.result(Status.FAIL, f"{self.failed} {shown}.", evidence)
