"""The three layers of control 9 (legacy_auth_exposure), each judged per mailbox as closed, open or unsure:
(a) SMTP AUTH on the mailbox or inherited from the tenant, (b) the effective Exchange authentication policy,
(c) Entra: security defaults or a Conditional Access block on Other clients that covers the mailbox's user.
Verdicts are shared constants and indexes are built once, so a verdict costs nothing per mailbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from shared.controls.base import as_bool, as_strings
from shared.controls.conditional_access import PolicyAssessment, legacy_block
from shared.controls.exchange_objects import (
    Unreadable,
    assigned_policy_name,
    policies_by_name,
    policy_key,
    ps_quote,
)
from shared.model import TenantSnapshot

OVERRIDE = "SmtpClientAuthenticationDisabled"

PRINCIPAL_EXCLUSIONS = frozenset({"users", "groups", "roles", "guestOrExternalUserTypes"})

CLOSED, OPEN, UNSURE = "closed", "open", "unsure"


class Verdict(NamedTuple):
    """One layer's answer for one mailbox. `fix` closes an open layer; `{mailbox}` / `{object_id}` are filled in
    only for the mailboxes shown, so shared verdicts cost nothing per mailbox."""

    state: str
    why: str
    fix: str = ""


def _text(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def casefold_key(value: Any) -> str | None:
    """Exchange names and Entra object ids compare case-insensitively."""
    text = _text(value)
    return text.casefold() if text else None


def dig(value: Any, *path: str) -> Any:
    for name in path:
        value = value.get(name) if isinstance(value, dict) else None
    return value


# ---------------------------------------------------------------- layer (a): SMTP AUTH

MAILBOX_OFF = Verdict(CLOSED, "SMTP AUTH is disabled on the mailbox")
MAILBOX_ON = Verdict(OPEN, "the mailbox override turns SMTP AUTH on (SmtpClientAuthenticationDisabled False)",
                     f"Set-CASMailbox {{mailbox}} -{OVERRIDE} $true")
TENANT_OFF = Verdict(CLOSED, "inherits the tenant, where SMTP AUTH is disabled")
TENANT_ON = Verdict(OPEN, "inherits the tenant, where SMTP AUTH is not disabled",
                    f"Set-TransportConfig -{OVERRIDE} $true")
# A missing field is not null (the mailbox was read without it), so it proves nothing either way.
OVERRIDE_UNREAD = Verdict(UNSURE, f"{OVERRIDE} was not read for the mailbox")


def smtp_auth_layer(mailbox: dict[str, Any], tenant_disabled: bool) -> Verdict:
    if OVERRIDE not in mailbox:
        return OVERRIDE_UNREAD
    raw = mailbox[OVERRIDE]
    value = as_bool(raw)
    if value is not None:
        return MAILBOX_OFF if value else MAILBOX_ON
    if raw is not None:
        return Verdict(UNSURE, f"{OVERRIDE} is unreadable ({raw!r})")
    return TENANT_OFF if tenant_disabled else TENANT_ON


# ---------------------------------------------------------------- layer (b): authentication policy

NO_POLICY = Verdict(OPEN, "no authentication policy applies (Microsoft's service defaults allow basic SMTP)",
                    "New-AuthenticationPolicy -Name 'Block Basic Auth'; Set-OrganizationConfig "
                    "-DefaultAuthenticationPolicy 'Block Basic Auth' "
                    "(a new policy blocks basic auth for every protocol)")


@dataclass(frozen=True)
class PolicyLayer:
    """Users matched to mailboxes, and one verdict per policy name (resolved once, shared by every user)."""

    verdicts: dict[str, Verdict]  # policy_key -> verdict
    default: str | None
    by_object_id: dict[str, dict[str, Any]]
    by_upn: dict[str, dict[str, Any]]
    by_identity: dict[str, dict[str, Any]]

    def user_for(self, mailbox: dict[str, Any], object_id: str | None) -> dict[str, Any] | None:
        """The Get-User entry: by ExternalDirectoryObjectId when both have it, else UserPrincipalName ==
        PrimarySmtpAddress, else Identity; a fallback match whose object id contradicts the mailbox's is refused."""
        if object_id and object_id in self.by_object_id:
            return self.by_object_id[object_id]
        for field, index in (("PrimarySmtpAddress", self.by_upn), ("Identity", self.by_identity)):
            user = index.get(casefold_key(mailbox.get(field)) or "")
            if user is not None:
                other = casefold_key(user.get("ExternalDirectoryObjectId"))
                if not (object_id and other and other != object_id):
                    return user
        return None

    def layer(self, user: dict[str, Any] | None) -> Verdict:
        try:
            name = (assigned_policy_name(user) if user is not None else None) or self.default
        except Unreadable as error:
            return Verdict(UNSURE, f"the user's {error}")
        if name is None:
            return NO_POLICY
        return self.verdicts.get(policy_key(name) or "") or Verdict(UNSURE, f"authentication policy '{name}' "
                                                                            "was not found")


def _policy_verdict(name: str, policy: dict[str, Any]) -> Verdict:
    allowed = as_bool(policy.get("AllowBasicAuthSmtp"))
    if allowed is None:
        return Verdict(UNSURE, f"authentication policy '{name}' has an unreadable AllowBasicAuthSmtp")
    if not allowed:
        return Verdict(CLOSED, f"authentication policy '{name}' blocks basic SMTP")
    return Verdict(OPEN, f"authentication policy '{name}' allows basic SMTP",
                   f"Set-AuthenticationPolicy {ps_quote(name)} -AllowBasicAuthSmtp:$false")


def policy_layer(users: list[dict[str, Any]], policies: list[Any], default: str | None) -> PolicyLayer:
    indexes: dict[str, dict[str, dict[str, Any]]] = {"ExternalDirectoryObjectId": {}, "UserPrincipalName": {},
                                                     "Identity": {}}
    for user in users:
        for field, index in indexes.items():
            key = casefold_key(user.get(field))
            if key:
                index.setdefault(key, user)
    verdicts = {key: _policy_verdict(_text(policy.get("Name")) or _text(policy.get("Identity")) or key, policy)
                for key, policy in policies_by_name(policies).items()}
    return PolicyLayer(verdicts, default, indexes["ExternalDirectoryObjectId"], indexes["UserPrincipalName"],
                       indexes["Identity"])


# ---------------------------------------------------------------- layer (c): Entra


def _names(policies: tuple[PolicyAssessment, ...]) -> str:
    return ", ".join(f"'{policy.name}'" for policy in policies[:3]) + (" and more" if len(policies) > 3 else "")


def _excluded_from_all(policies: tuple[PolicyAssessment, ...]) -> frozenset[str]:
    sets = [frozenset(item.casefold() for item in policy.excluded_users) for policy in policies]
    return frozenset.intersection(*sets) if sets else frozenset()


@dataclass(frozen=True)
class EntraCoverage:
    """Who the Entra layer blocks, precomputed so each mailbox costs one or two set lookups.

    A user is covered by a block unless excluded from it. With several blocks, a user escapes only when excluded
    from every one, hence the intersections. Exclusions of groups or roles cannot be resolved without membership.
    """

    everyone: Verdict | None  # security defaults on, or a block that excludes nobody
    direct: tuple[PolicyAssessment, ...]  # blocks that exclude users by id only
    indirect: tuple[PolicyAssessment, ...]  # blocks that also exclude groups or roles
    escape_direct: frozenset[str]  # object ids excluded from every direct block
    escape_indirect: frozenset[str]

    def layer(self, object_id: str | None) -> Verdict:
        if self.everyone:
            return self.everyone
        blocks = self.direct + self.indirect
        if not blocks:
            return Verdict(OPEN, "security defaults are off and no Conditional Access block covers Other clients",
                           "create a Conditional Access policy blocking Exchange ActiveSync + Other clients for All "
                           "users and All cloud apps")
        if object_id is None:
            return Verdict(UNSURE, "the mailbox has no ExternalDirectoryObjectId to check against excludeUsers of "
                                   f"{_names(blocks)}")
        if self.direct and object_id not in self.escape_direct:
            return Verdict(CLOSED, "a Conditional Access block on Other clients covers the user")
        if self.indirect and object_id not in self.escape_indirect:
            return Verdict(UNSURE, "possibly exposed: group membership not expanded "
                                   f"({_names(self.indirect)} excludes groups or roles)")
        return Verdict(OPEN, f"the user is excluded by id from {_names(blocks)}",
                       f"remove {{object_id}} from excludeUsers of {_names(blocks)}")


def entra_coverage(defaults_on: bool, policies: list[Any], snapshot: TenantSnapshot) -> EntraCoverage:
    """Blocks are the CA policies on Other clients that qualify for control 1 apart from their exclusions of users,
    groups, roles or guests: such an exclusion, approved or not, removes exactly the excluded principals from a policy
    that still blocks everyone else (control 1 already fails on the unapproved ones)."""
    if defaults_on:
        return EntraCoverage(Verdict(CLOSED, "security defaults are on"), (), (), frozenset(), frozenset())
    direct: list[PolicyAssessment] = []
    indirect: list[PolicyAssessment] = []
    for policy, assessment in zip(policies, legacy_block(policies, snapshot).assessments):  # one per policy, in order
        # assess() adds exactly one reason per unapproved exclusion kind; any other reason means it does not block.
        # Only exclusions of principals are forgiven: an excluded location or app narrows the block for everyone.
        if ("other" not in assessment.legacy_types or len(assessment.reasons) != len(assessment.unapproved)
                or not set(assessment.unapproved) <= PRINCIPAL_EXCLUSIONS):
            continue
        # Guest/external exclusions are ignored: the users behind mailboxes are members, not guests.
        roles = as_strings(dig(policy, "conditions", "users", "excludeRoles"))
        if not (assessment.excluded_users or assessment.excluded_groups or roles):
            why = f"Conditional Access policy '{assessment.name}' blocks Other clients for all users"
            return EntraCoverage(Verdict(CLOSED, why), (), (), frozenset(), frozenset())
        (indirect if assessment.excluded_groups or roles else direct).append(assessment)
    return EntraCoverage(None, tuple(direct), tuple(indirect), _excluded_from_all(tuple(direct)),
                         _excluded_from_all(tuple(indirect)))
