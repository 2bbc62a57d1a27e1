"""The channel plug-in contract and the registry (`@register_channel("teams")`).

A channel type declares its configuration fields and validates them in `from_config` when the configuration is
loaded, so a typo or a missing app setting is a clear error at start-up, not a failed alert at 3 a.m. A channel
renders a message (`render_alert`, `render_digest`: pure, so tests can read them) and sends it (`send_once`: one try;
retries and backoff are the caller's). Every try has a deadline (`Channel.send`): whatever a channel's `send_once`
does, a receiver that never finishes answering cannot hold a delivery past it.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import httpx

from shared.alerts.content import AlertGroup, Digest
from shared.alerts.errors import AlertConfigError
from shared.alerts.http import DeliveryError, RetryPolicy, post_pinned, with_retries
from shared.alerts.safety import UnsafeTarget, check_url
from shared.collect.endpoints import MicrosoftEndpoints

# One try of a channel is at most this many requests of AUTHWATCH_ALERT_TIMEOUT_SECONDS each (e-mail: a token, then
# the send). A webhook's single request has its own, tighter deadline in post_pinned.
REQUESTS_PER_TRY = 2
CHANNEL_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]{0,127}$")
_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass
class SendContext:
    """What sending needs besides the channel's own configuration."""

    policy: RetryPolicy = field(default_factory=RetryPolicy)
    allow_loopback: bool = False
    endpoints: MicrosoftEndpoints = field(default_factory=MicrosoftEndpoints)
    env: Mapping[str, str] = field(default_factory=dict, repr=False)
    clock: Callable[[], float] = time.time  # wall clock for signature timestamps
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep


class ChannelConfig:
    """One channel's JSON configuration, read field by field. Every error names the channel and the field; values
    read from app settings are never quoted. `finish()` refuses the fields nobody read."""

    def __init__(self, name: str, data: dict[str, Any], env: Mapping[str, str], *, allow_loopback: bool,
                 where: str = "AUTHWATCH_ALERT_CHANNELS", fields: tuple[str, ...] = ()) -> None:
        self.name = name
        self.data = data
        self.env = env
        self.allow_loopback = allow_loopback
        self.where = where
        self.fields = ("type", *fields)
        self._read = {"type"}

    def error(self, field_name: str, message: str) -> AlertConfigError:
        return AlertConfigError(f"{self.where}: channel '{self.name}': {field_name}: {message}")

    def has(self, field_name: str) -> bool:
        return field_name in self.data

    def raw(self, field_name: str) -> Any:
        self._read.add(field_name)
        return self.data.get(field_name)

    def text(self, field_name: str, *, required: bool = True, max_chars: int = 320) -> str | None:
        value = self.raw(field_name)
        if value is None:
            if required:
                raise self.error(field_name, "required")
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > max_chars:
            raise self.error(field_name, f"expected non-empty text of at most {max_chars} characters")
        return value.strip()

    def texts(self, field_name: str, *, required: bool = True, max_items: int = 50) -> list[str]:
        value = self.raw(field_name)
        if value is None:
            if required:
                raise self.error(field_name, "required (a list)")
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or (required and not value) or len(value) > max_items:
            raise self.error(field_name, f"expected a list of 1 to {max_items} entries")
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.strip() or len(item) > 320:
                raise self.error(f"{field_name}[{index}]", "expected non-empty text")
        return [item.strip() for item in value]

    def flag(self, field_name: str, default: bool) -> bool:
        value = self.raw(field_name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(field_name, f"expected true or false, got {type(value).__name__}")
        return value

    def setting_name(self, field_name: str, *, required: bool = True) -> str | None:
        value = self.raw(field_name)
        if value is None:
            if required:
                raise self.error(field_name, "required: the NAME of the app setting that holds the value")
            return None
        if not isinstance(value, str) or not _SETTING_NAME.match(value):
            # never quoted: this is where someone pastes the secret itself
            raise self.error(field_name, "expected the NAME of an app setting (letters, digits, '_' or '.'), not "
                                         "the value itself")
        return value

    def setting_value(self, field_name: str, *, required: bool = True) -> tuple[str | None, str | None]:
        name = self.setting_name(field_name, required=required)
        if name is None:
            return None, None
        value = self.env.get(name)
        if not value or not value.strip():
            raise self.error(field_name, f"app setting {name} is not set (on Azure it usually holds a Key Vault "
                                         "reference)")
        if value.lstrip().startswith("@Microsoft.KeyVault("):
            raise self.error(field_name, f"app setting {name} holds an unresolved Key Vault reference (check the "
                                         "app's identity has 'get' on the secret)")
        return name, value.strip()

    def url(self, field_name: str, value: str, *, source: str) -> httpx.URL:
        try:
            return check_url(value, allow_loopback=self.allow_loopback)
        except UnsafeTarget as error:
            raise self.error(field_name, f"{source}: {error}") from None

    def finish(self) -> None:
        unknown = sorted(set(self.data) - set(self.fields))
        if unknown:
            raise self.error(unknown[0], "unknown field for a channel of type "
                                         f"{self.data.get('type')!r} (allowed: {', '.join(self.fields)})")
        unread = sorted(set(self.data) - self._read)
        if unread:  # a declared field the channel forgot to read: a bug in the plug-in, not in the configuration
            raise self.error(unread[0], "declared but not read by the channel type (plug-in bug)")


class Channel(ABC):
    """A configured destination. Subclasses register with `@register_channel("<type>")`."""

    type: ClassVar[str] = ""
    description: ClassVar[str] = ""
    fields: ClassVar[tuple[str, ...]] = ()  # the configuration fields it accepts besides "type"

    def __init__(self, name: str) -> None:
        self.name = name

    @classmethod
    @abstractmethod
    def from_config(cls, config: ChannelConfig) -> Channel:
        """Validate the configuration (config.finish() at the end) and build the channel."""

    @abstractmethod
    def render_alert(self, group: AlertGroup) -> dict[str, Any]:
        """The request body for one grouped alert."""

    @abstractmethod
    def render_digest(self, digest: Digest) -> dict[str, Any]:
        """The request body for a reminder digest."""

    @abstractmethod
    async def send_once(self, payload: dict[str, Any], *, message_id: str, context: SendContext) -> None:
        """One try; raises shared.alerts.http.DeliveryError."""

    def secrets(self) -> tuple[str, ...]:
        """Values that must never appear in a log line, a Table row or a payload."""
        return ()

    async def send(self, payload: dict[str, Any], *, message_id: str, context: SendContext) -> int:
        """Send with bounded backoff; returns the number of tries (DeliveryError carries .tries). Each try ends at
        its deadline (REQUESTS_PER_TRY × the timeout) as a transient DeliveryError, whatever send_once is doing."""
        deadline_s = context.policy.timeout_s * REQUESTS_PER_TRY

        async def one_try() -> None:
            deadline = asyncio.timeout(deadline_s)
            try:
                async with deadline:
                    await self.send_once(payload, message_id=message_id, context=context)
            except TimeoutError:
                if deadline.expired():
                    raise DeliveryError(f"timed out (the try took longer than {deadline_s:g} s)") from None
                raise

        return await with_retries(one_try, context.policy, sleep=context.sleep)

    def __repr__(self) -> str:  # never the URL or a secret
        return f"{type(self).__name__}(name={self.name!r})"


def json_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


class WebhookChannel(Channel):
    """A channel that POSTs JSON to one URL checked by shared.alerts.safety (Teams, Slack, generic webhook)."""

    def __init__(self, name: str, url: httpx.URL) -> None:
        super().__init__(name)
        self._url = url

    @classmethod
    def from_config(cls, config: ChannelConfig) -> WebhookChannel:
        """A webhook whose whole configuration is the app setting holding its URL (Teams, Slack)."""
        return cls(config.name, cls.url_from_setting(config))

    @classmethod
    def url_from_setting(cls, config: ChannelConfig) -> httpx.URL:
        if config.has("url"):
            config.raw("url")
            raise config.error("url", f"not allowed for {cls.type}: its URL carries a secret token; put the URL in "
                                      "an app setting (a Key Vault reference) and name that setting in urlSetting")
        name, value = config.setting_value("urlSetting")
        return config.url("urlSetting", value or "", source=f"app setting {name}")

    def secrets(self) -> tuple[str, ...]:
        url = str(self._url)
        path = self._url.raw_path.decode("ascii", "replace")
        return tuple(value for value in (url, path if len(path) > 8 else "") if value)

    async def post(self, body: bytes, headers: Mapping[str, str], context: SendContext) -> None:
        await post_pinned(self._url, body, headers, allow_loopback=context.allow_loopback,
                          timeout_s=context.policy.timeout_s)


ChannelType = TypeVar("ChannelType", bound=type[Channel])
_REGISTRY: dict[str, type[Channel]] = {}


def register_channel(type_name: str) -> Callable[[ChannelType], ChannelType]:
    """Class decorator: make a Channel subclass available as `"type": type_name` in AUTHWATCH_ALERT_CHANNELS."""
    if not _TYPE_NAME.match(type_name):
        raise ValueError(f"channel type {type_name!r}: expected lower-case letters, digits, '-' or '_'")

    def decorate(cls: ChannelType) -> ChannelType:
        if not (isinstance(cls, type) and issubclass(cls, Channel)):
            raise TypeError(f"channel type {type_name!r}: {cls!r} is not a Channel subclass")
        existing = _REGISTRY.get(type_name)
        if existing is not None and existing is not cls:
            raise ValueError(f"channel type {type_name!r} is already registered by {existing.__module__}")
        cls.type = type_name
        _REGISTRY[type_name] = cls
        return cls

    return decorate


def channel_types() -> dict[str, type[Channel]]:
    return dict(_REGISTRY)


def build_channel(name: Any, data: Any, env: Mapping[str, str], *, allow_loopback: bool,
                  where: str = "AUTHWATCH_ALERT_CHANNELS") -> Channel:
    if not isinstance(name, str) or not CHANNEL_NAME.match(name):
        raise AlertConfigError(f"{where}: channel name {str(name)[:40]!r}: expected lower-case letters, digits, "
                               "'-', '_' or '.' (at most 63)")
    if not isinstance(data, dict):
        raise AlertConfigError(f"{where}: channel '{name}': expected an object with a \"type\", got "
                               f"{type(data).__name__}")
    kind = data.get("type")
    if kind not in _REGISTRY:
        raise AlertConfigError(f"{where}: channel '{name}': type: expected one of {', '.join(sorted(_REGISTRY))}, "
                               f"got {str(kind)[:40]!r}")
    channel_type = _REGISTRY[kind]
    config = ChannelConfig(name, data, env, allow_loopback=allow_loopback, where=where, fields=channel_type.fields)
    channel = channel_type.from_config(config)
    config.finish()
    return channel
