"""Webhook targets: https only, never private, loopback or link-local addresses (loopback only with the explicit
test setting), checked again on every send against what the name resolves to."""

from __future__ import annotations

import asyncio
import socket

import httpx
import pytest

from shared.alerts.http import DeliveryError, post_pinned
from shared.alerts.safety import UnsafeTarget, check_url, loopback_allowed, resolve_target


@pytest.mark.parametrize("url", [
    "https://hooks.slack.com/services/T0/B0/x",
    "https://prod-01.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=s",
    "https://93.184.216.34/hook",
    "https://[2606:4700::1111]/hook",
])
def test_public_https_targets_pass(url):
    assert check_url(url, allow_loopback=False).scheme == "https"


@pytest.mark.parametrize(("url", "phrase"), [
    ("http://hooks.slack.com/services/x", "must use https://"),
    ("ftp://example.com/x", "https://"),
    ("https:///nohost", "https://"),
    ("not a url", "https://"),
    ("https://10.0.0.1/x", "private"),
    ("https://172.16.5.4/x", "private"),
    ("https://192.168.1.1/x", "private"),
    ("https://[fd00::1]/x", "private"),
    ("https://169.254.169.254/x", "link-local"),
    ("https://[fe80::1]/x", "link-local"),
    ("https://100.64.0.1/x", "non-public"),
    ("https://0.0.0.0/x", "non-public"),
    ("https://224.0.0.1/x", "non-public"),
    ("https://127.0.0.1/x", "loopback"),
    ("https://[::1]/x", "loopback"),
    ("https://[::ffff:127.0.0.1]/x", "loopback"),
    ("https://localhost/x", "loopback"),
    ("http://127.0.0.1:8080/x", "https://"),
    ("https://user:secret@example.com/x", "user name or password"),
])
def test_unsafe_targets_are_refused(url, phrase):
    with pytest.raises(UnsafeTarget) as caught:
        check_url(url, allow_loopback=False)
    assert phrase in str(caught.value)
    assert "/x" not in str(caught.value) and "secret" not in str(caught.value)  # never the path or credentials


def test_loopback_only_with_the_explicit_setting_and_never_private():
    assert check_url("http://127.0.0.1:8080/hook", allow_loopback=True).host == "127.0.0.1"
    assert check_url("http://localhost:8080/hook", allow_loopback=True).host == "localhost"
    assert check_url("https://[::1]:8443/hook", allow_loopback=True)
    for url in ("http://10.0.0.1/x", "https://10.0.0.1/x", "https://169.254.169.254/x", "http://example.com/x"):
        with pytest.raises(UnsafeTarget):
            check_url(url, allow_loopback=True)


@pytest.mark.parametrize(("value", "allowed"), [("1", True), ("true", True), ("YES", True), ("", False),
                                                ("0", False), ("false", False)])
def test_the_loopback_setting(value, allowed):
    assert loopback_allowed({"AUTHWATCH_ALLOW_LOOPBACK_WEBHOOKS": value}) is allowed
    assert loopback_allowed({}) is False


def fake_dns(monkeypatch, answers: dict[str, list[str]]):
    async def getaddrinfo(self, host, port, *args, **kwargs):
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                for a in answers[host]]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", getaddrinfo)


def test_a_name_resolving_to_a_private_address_is_refused(monkeypatch):
    fake_dns(monkeypatch, {"hooks.example.com": ["10.0.0.7"], "mixed.example.com": ["93.184.216.34", "169.254.1.1"],
                           "public.example.com": ["93.184.216.34"]})

    async def resolve(url: str):
        return await resolve_target(httpx.URL(url), allow_loopback=False)

    with pytest.raises(UnsafeTarget, match=r"hooks\.example\.com resolves to a private address \(10\.0\.0\.7\)"):
        asyncio.run(resolve("https://hooks.example.com/x"))
    with pytest.raises(UnsafeTarget, match="link-local"):
        asyncio.run(resolve("https://mixed.example.com/x"))  # one bad answer is enough
    with pytest.raises(UnsafeTarget, match="cannot be resolved"):
        asyncio.run(resolve("https://nowhere.example.com/x"))
    assert [str(a) for a in asyncio.run(resolve("https://public.example.com/x"))] == ["93.184.216.34"]


def test_a_refused_target_is_a_permanent_delivery_error_and_nothing_is_sent(monkeypatch):
    fake_dns(monkeypatch, {"rebind.example.com": ["127.0.0.1"]})
    with pytest.raises(DeliveryError) as caught:
        asyncio.run(post_pinned(httpx.URL("https://rebind.example.com/services/SECRET"), b"{}", {},
                                allow_loopback=False, timeout_s=1))
    assert caught.value.permanent and "loopback" in caught.value.reason
    assert "SECRET" not in caught.value.reason
