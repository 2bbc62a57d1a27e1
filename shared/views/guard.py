"""What a web browser may not make authwatch do: the checks in front of the HTTP API, shared by the function app
(functions/http_api.py) and `authwatch serve` (shared/cli/serve.py). Pure: headers in, a `Refused` (status and a
message saying what to do) or nothing out.

Any page a person has open can make their browser send a request to any address, the browser's credentials or
network position included (cross-site request forgery), and a name the page's author controls can be re-pointed at
127.0.0.1 (DNS rebinding). What the page cannot do without a CORS preflight, which authwatch never answers with
permission, is send a custom header or `Content-Type: application/json`, read the answer, or hide where it comes
from (`Origin`, `Sec-Fetch-Site`). So a state-changing request (POST, PUT, PATCH, DELETE):

  * from a browser, comes from authwatch's own origin (`Origin` is the address it was sent to; `Sec-Fetch-Site`, when
    present, is `same-origin` or `none`), else 403;
  * declares its body as JSON (`Content-Type: application/json`; a request with neither a body nor a type, such as
    `curl -X POST …/evaluate`, passes), else 415;
  * and, on `authwatch serve`, carries the run's token (`X-Authwatch-Token`, handed to the page it serves), else 403.

`authwatch serve` also answers only Host headers that name the address it listens on (`allowed_hosts`).
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Iterable, Mapping
from urllib.parse import urlsplit

STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_HEADER = "X-Authwatch-Token"
_LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class Refused(Exception):
    """A request refused before it reaches a route: its HTTP status and what to do instead."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _netloc(host: str, scheme: str = "") -> str:
    """host[:port] lower-cased, without the scheme's default port."""
    host = host.strip().lower()
    for default_scheme, port in (("http", ":80"), ("https", ":443")):
        if scheme in ("", default_scheme) and host.endswith(port):
            return host[:-len(port)]
    return host


def allowed_hosts(bound: str, port: int) -> frozenset[str]:
    """The Host headers a local server bound to `bound`:`port` answers: its own address, and for a loopback address
    every loopback name (127.0.0.1, localhost, [::1]), each with the port."""
    try:
        address = ipaddress.ip_address(bound.strip("[]"))
        names = {f"[{address}]" if address.version == 6 else str(address)}
        if address.is_loopback:
            names.update(_LOOPBACK_NAMES)
    except ValueError:  # a name the operator chose
        names = {bound.lower()}
    return frozenset(_netloc(f"{name}:{port}") for name in names)


def check_host(host: str | None, allowed: frozenset[str]) -> None:
    if _netloc(host or "") not in allowed:
        raise Refused(403, f"Host {host!r} refused: this server answers only {', '.join(sorted(allowed))} (a "
                           "different name pointing at it is how a web page reads a local server: DNS rebinding). "
                           "Open the address `authwatch serve` printed.")


def check_same_origin(headers: Mapping[str, str], hosts: Iterable[str | None]) -> None:
    """403 unless a browser's request comes from the origin it was sent to (`hosts`: the names this request reached
    the server by). A request with neither header is not a browser's (a script, curl) and passes."""
    site = (headers.get("sec-fetch-site") or "").strip().lower()
    if site not in ("", "same-origin", "none"):
        raise Refused(403, f"cross-site request refused (Sec-Fetch-Site: {site}): actions are taken from authwatch's "
                           "own dashboard page, or by a script (which sends no Origin)")
    origin = headers.get("origin")
    if origin is None:
        return
    parts = urlsplit(origin.strip())
    own = {_netloc(host) for host in hosts if host}
    if parts.scheme not in ("http", "https") or not parts.netloc or _netloc(parts.netloc, parts.scheme) not in own:
        raise Refused(403, f"cross-site request refused: Origin {origin!r} is not this server's own address "
                           f"({', '.join(sorted(own)) or 'unknown'}); actions are taken from authwatch's own "
                           "dashboard page, or by a script (which sends no Origin)")


def check_json(content_type: str | None, body: bytes) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media == "application/json" or (not (content_type or "").strip() and not body):
        return
    raise Refused(415, f"Content-Type must be application/json on this route, got {content_type or 'none'!r} "
                       "(send the body as JSON, e.g. curl -H 'Content-Type: application/json' -d '{…}')")


def check_token(sent: str | None, expected: str) -> None:
    if not sent or not hmac.compare_digest(sent.encode("utf-8", "replace"), expected.encode("utf-8")):
        raise Refused(403, f"missing or wrong {TOKEN_HEADER}: actions need this run's token, which the dashboard "
                           "page sends itself; a script finds it where `authwatch serve` printed it at start")
