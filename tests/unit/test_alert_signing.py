"""X-Authwatch-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">: verification rejects tampering, other
secrets, stale or future timestamps and malformed headers."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timezone

import pytest

from shared.alerts.signing import sign, verify_signature

SECRET = "whsec-unit-0123456789abcdef"
BODY = b'{"id":"4f1c","type":"control.failed","tenantId":"8c1d0f4e-1a2b-4c3d-8e9f-00000000abcd"}'
NOW = 1_795_000_000


def test_the_header_is_the_documented_hmac_of_t_dot_body():
    header = sign(BODY, SECRET, timestamp=NOW)
    expected = hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert header == f"t={NOW},v1={expected}"


def test_a_fresh_signature_verifies_with_a_datetime_or_unix_now():
    header = sign(BODY, SECRET, timestamp=NOW)
    assert verify_signature(BODY, header, SECRET, now=NOW)
    assert verify_signature(BODY, header, SECRET, now=datetime.fromtimestamp(NOW + 120, timezone.utc))
    assert verify_signature(bytearray(BODY), header, SECRET, now=NOW)


@pytest.mark.parametrize("body", [
    BODY.replace(b"control.failed", b"control.recovered"),
    BODY + b" ",
    BODY[:-1],
    b"",
])
def test_a_tampered_body_fails(body):
    assert not verify_signature(body, sign(BODY, SECRET, timestamp=NOW), SECRET, now=NOW)


def test_another_secret_fails():
    assert not verify_signature(BODY, sign(BODY, "someone-elses-secret", timestamp=NOW), SECRET, now=NOW)
    assert not verify_signature(BODY, sign(BODY, SECRET, timestamp=NOW), "", now=NOW)


@pytest.mark.parametrize(("offset", "ok"), [(-301, False), (-300, True), (0, True), (300, True), (301, False),
                                            (-86400, False), (86400, False)])
def test_stale_and_future_timestamps_fail_outside_the_tolerance(offset, ok):
    header = sign(BODY, SECRET, timestamp=NOW)
    assert verify_signature(BODY, header, SECRET, now=NOW - offset) is ok


def test_the_tolerance_is_configurable():
    header = sign(BODY, SECRET, timestamp=NOW)
    assert not verify_signature(BODY, header, SECRET, now=NOW + 61, tolerance_s=60)
    assert verify_signature(BODY, header, SECRET, now=NOW + 3000, tolerance_s=3600)


def test_a_replayed_signature_with_a_new_timestamp_fails():
    digest = sign(BODY, SECRET, timestamp=NOW).split("v1=")[1]
    assert not verify_signature(BODY, f"t={NOW + 600},v1={digest}", SECRET, now=NOW + 600)


def test_any_matching_v1_is_accepted_for_secret_rotation():
    new = sign(BODY, SECRET, timestamp=NOW).split("v1=")[1]
    old = sign(BODY, "the-previous-secret-value", timestamp=NOW).split("v1=")[1]
    assert verify_signature(BODY, f"t={NOW},v1={old},v1={new}", SECRET, now=NOW)


@pytest.mark.parametrize("header", [
    "", "garbage", f"t={NOW}", "v1=" + "0" * 64, f"t=abc,v1={'0' * 64}", f"t={NOW},t={NOW},v1={'0' * 64}",
    f"t={NOW},v1=xyz", f"t=-{NOW},v1={'0' * 64}", f"t={NOW};v1={'0' * 64}", f"t=٣,v1={'0' * 64}",
])
def test_malformed_headers_fail(header):
    assert not verify_signature(BODY, header, SECRET, now=NOW)


def test_signing_needs_a_secret():
    with pytest.raises(ValueError):
        sign(BODY, "", timestamp=NOW)
