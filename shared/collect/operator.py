"""The MSP operator's one interactive sign-in, for onboarding only (monitoring never uses delegated rights).

azure-identity's DeviceCodeCredential signs the operator in to the partner tenant once (a code to enter at
microsoft.com/devicelogin, which works on a machine without a browser); its tokens for customer tenants come from the
same sign-in through MSAL's refresh token (`additionally_allowed_tenants=["*"]`, `get_token(..., tenant_id=...)`), so
onboarding 300 customers is one prompt, not 300.
  https://learn.microsoft.com/python/api/azure-identity/azure.identity.devicecodecredential
  https://learn.microsoft.com/entra/identity-platform/v2-oauth2-device-code
The credential is synchronous (azure-identity has no async interactive credentials): each call runs on a daemon
thread, bounded by a deadline, so a sign-in nobody completes ends with a named error instead of a hang.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.collect.endpoints import MicrosoftEndpoints

SIGN_IN_DEADLINE_S = 15 * 60  # a device code is valid for 15 minutes (expires_in 900 in Microsoft's example)
TOKEN_DEADLINE_S = 60.0  # a refresh-token exchange after the sign-in


async def _in_daemon_thread(method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`method` on a daemon thread: unlike asyncio.to_thread (whose executor the loop and the interpreter wait for
    at exit), a call still hanging past its deadline cannot keep the command from ending."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(outcome: Any, failed: bool) -> None:
        if not future.done():  # the deadline may have cancelled it
            future.set_exception(outcome) if failed else future.set_result(outcome)

    def work() -> None:
        try:
            outcome, failed = method(*args, **kwargs), False
        except BaseException as error:  # noqa: BLE001 - handed to the awaiting task
            outcome, failed = error, True
        try:
            loop.call_soon_threadsafe(settle, outcome, failed)
        except RuntimeError:
            pass  # the loop has closed: nobody is waiting any more

    threading.Thread(target=work, name="authwatch-operator-sign-in", daemon=True).start()
    return await future


class OperatorSignInError(Exception):
    """The operator's sign-in failed, was declined, or took longer than the deadline; `tenant_id` is the customer
    tenant it was for (None: the partner tenant itself, which stops the whole run)."""

    def __init__(self, message: str, tenant_id: str | None = None) -> None:
        super().__init__(message)
        self.tenant_id = tenant_id


Prompt = Callable[[str, str, datetime], None]  # (verification uri, user code, expires on)


class OperatorSignIn:
    """Delegated tokens for the operator: `sign_in()` once (the only prompt), then `token()` for the partner tenant
    or any customer, silently; a token that would need a second prompt is an OperatorSignInError instead."""

    def __init__(self, client_id: str, partner_tenant_id: str, endpoints: MicrosoftEndpoints, prompt: Prompt,
                 *, credential: Any | None = None) -> None:
        if credential is None:
            from azure.identity import DeviceCodeCredential

            options: dict[str, Any] = {"authority": endpoints.authority, "tenant_id": partner_tenant_id,
                                       "additionally_allowed_tenants": ["*"], "prompt_callback": prompt,
                                       "timeout": SIGN_IN_DEADLINE_S, "disable_automatic_authentication": True,
                                       # MSAL validates an authority it does not know against login.microsoftonline
                                       # .com; a sovereign or test authority (the simulator) cannot be, so it is
                                       # trusted as configured (the keyword's documented use).
                                       "disable_instance_discovery": not _public_authority(endpoints.authority)}
            if endpoints.ca_bundle:
                options["connection_verify"] = endpoints.ca_bundle
            credential = DeviceCodeCredential(client_id, **options)
        self._credential = credential

    async def sign_in(self, scope: str) -> None:
        """The operator's one interactive sign-in (device code), bounded by the code's validity."""
        await self._call(self._credential.authenticate, SIGN_IN_DEADLINE_S + 30, None, scopes=[scope])

    async def token(self, scope: str, tenant_id: str | None = None) -> str:
        """An access token for `scope` in the partner tenant (None) or a customer tenant, without prompting."""
        kwargs = {"tenant_id": tenant_id} if tenant_id else {}
        token = await self._call(self._credential.get_token, TOKEN_DEADLINE_S, tenant_id, scope, **kwargs)
        return token.token

    async def _call(self, method: Callable[..., Any], deadline: float, where: str | None, *args: Any,
                    **kwargs: Any) -> Any:
        from azure.core.exceptions import ClientAuthenticationError

        try:
            return await asyncio.wait_for(_in_daemon_thread(method, *args, **kwargs), deadline)
        except TimeoutError:
            raise OperatorSignInError(f"no answer from the sign-in within {deadline:g} s", where) from None
        except ClientAuthenticationError as error:  # AuthenticationRequiredError is one: a second prompt was needed
            raise OperatorSignInError(_reason(error, where), where) from None

    def close(self) -> None:
        close = getattr(self._credential, "close", None)
        if close is not None:
            close()


# Microsoft's public and national-cloud sign-in hosts (https://learn.microsoft.com/entra/identity-platform/authentication-national-cloud)
KNOWN_AUTHORITIES = ("login.microsoftonline.com", "login.microsoftonline.us", "login.partner.microsoftonline.cn")


def _public_authority(authority: str) -> bool:
    host = authority.split("://", 1)[-1].split("/", 1)[0].lower()
    return host in KNOWN_AUTHORITIES


def _entra_words(error: Exception) -> str:
    """Entra's error_description (it names the AADSTS code) from the failed response azure-identity keeps — an
    AuthenticationRequiredError's own message only says a prompt would be needed — else the error's message."""
    response = getattr(error, "response", None)
    if response is not None:
        try:
            body = json.loads(response.text())
        except Exception:  # noqa: BLE001 - no readable body: fall back to the message
            body = None
        if isinstance(body, dict) and body.get("error_description"):
            return str(body["error_description"])
    return str(getattr(error, "message", "") or error)


def _reason(error: Exception, tenant_id: str | None) -> str:
    """Entra's own words, first line, never the token or the device code."""
    text = _entra_words(error).strip().splitlines()
    where = f"customer tenant {tenant_id}" if tenant_id else "the partner tenant"
    return f"sign-in to {where} failed: {text[0][:300] if text else type(error).__name__}"
