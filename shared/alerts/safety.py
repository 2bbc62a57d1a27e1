"""Where a webhook may go: https only, never to a private, loopback, link-local or otherwise non-public address
(server-side request forgery: a webhook URL is operator input, and the function app runs inside Azure next to the
instance metadata endpoint and private networks).

Two checks: `check_url` when the configuration is loaded (scheme, host, literal addresses; no DNS), and
`resolve_target` just before each request (every address the host resolves to must be public). The request is then
sent to the address that was checked, with the original host in the Host header and as TLS SNI (certificate checked
against the name), so DNS cannot answer differently between the check and the connection (DNS rebinding).

Loopback targets, over http or https, are allowed only when AUTHWATCH_ALLOW_LOOPBACK_WEBHOOKS is set (tests and
local receivers); private and link-local addresses never are. Messages name the host and the address, never the
path or query (Slack and Teams URLs carry their secret there).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Mapping

import httpx

ALLOW_LOOPBACK_SETTING = "AUTHWATCH_ALLOW_LOOPBACK_WEBHOOKS"
_TRUE = ("1", "true", "yes", "on")
_LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeTarget(ValueError):
    """The URL is not an acceptable webhook target; the message says why without quoting the URL's path."""


def loopback_allowed(env: Mapping[str, str]) -> bool:
    return str(env.get(ALLOW_LOOPBACK_SETTING, "")).strip().lower() in _TRUE


def _literal_address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _plain(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.1 is 10.0.0.1
    return address


def address_problem(address: IPAddress, *, allow_loopback: bool) -> str | None:
    """Why this address may not receive a webhook, or None when it may."""
    address = _plain(address)
    if address.is_loopback:
        return None if allow_loopback else f"a loopback address ({address}; allowed only with {ALLOW_LOOPBACK_SETTING}=1)"
    if address.is_link_local:
        return f"a link-local address ({address})"
    if address.is_unspecified or address.is_multicast or address.is_reserved:
        return f"a non-public address ({address})"
    if address.is_private:
        return f"a private address ({address})"
    if not address.is_global:
        return f"a non-public address ({address})"
    return None


def check_url(url: str, *, allow_loopback: bool) -> httpx.URL:
    """Parse and check a webhook URL without DNS: https (http only to a loopback host, when allowed), a host, no
    user name or password, and a literal address that is public. Returns the parsed URL."""
    if not isinstance(url, str) or not url.strip():
        raise UnsafeTarget("expected a URL")
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError, ValueError):
        raise UnsafeTarget("not a valid URL") from None
    host = parsed.host
    if parsed.scheme not in ("https", "http") or not host:
        raise UnsafeTarget("expected an https:// URL with a host")
    if parsed.userinfo:
        raise UnsafeTarget(f"{host}: a user name or password in the URL is not allowed")
    literal = _literal_address(host)
    loopback_host = host.lower() in _LOOPBACK_NAMES or (literal is not None and _plain(literal).is_loopback)
    if parsed.scheme == "http" and not (allow_loopback and loopback_host):
        raise UnsafeTarget(f"{host}: webhooks must use https:// (plain http is allowed only to a loopback receiver "
                           f"with {ALLOW_LOOPBACK_SETTING}=1)")
    if literal is not None:
        problem = address_problem(literal, allow_loopback=allow_loopback)
        if problem:
            raise UnsafeTarget(f"{host} is {problem}")
    elif loopback_host and not allow_loopback:
        raise UnsafeTarget(f"{host} is a loopback name (allowed only with {ALLOW_LOOPBACK_SETTING}=1)")
    return parsed


async def resolve_target(url: httpx.URL, *, allow_loopback: bool) -> list[IPAddress]:
    """Every address the URL's host resolves to, after checking each one; UnsafeTarget when any is not allowed
    (a name that resolves to one public and one private address is refused: either could be used)."""
    check_url(str(url), allow_loopback=allow_loopback)
    host = url.host
    literal = _literal_address(host)
    if literal is not None:
        return [literal]
    port = url.port or (443 if url.scheme == "https" else 80)
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError, OSError) as error:
        raise UnsafeTarget(f"{host} cannot be resolved ({type(error).__name__})") from None
    addresses: list[IPAddress] = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnsafeTarget(f"{host} resolves to no address")
    for address in addresses:
        problem = address_problem(address, allow_loopback=allow_loopback)
        if problem:
            raise UnsafeTarget(f"{host} resolves to {problem}")
    return addresses
