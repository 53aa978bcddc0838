"""HubSpot request signatures: every vector in hubspot-facts.md §1.4, tampering, clocks, headers."""

from __future__ import annotations

import pytest
from hubspot.utils.signature import Signature
from hypothesis import given
from hypothesis import strategies as st

from webhooks.signature import (
    decode_uri,
    sign_v1,
    sign_v2,
    sign_v3,
    verify_request,
    verify_v1,
    verify_v2,
    verify_v3,
)
from worker.errors import SignatureError

# hubspot-facts.md §1.4 / [V1FAQ]
V1_SECRET = "yyyyyyyy-yyyy-yyyy-yyyy-yyyyyyyyyyyy"
V1_BODY = (
    b'[{"eventId":1,"subscriptionId":12345,"portalId":62515,"occurredAt":1564113600000,'
    b'"subscriptionType":"contact.creation","attemptNumber":0,"objectId":123,"changeSource":"CRM",'
    b'"changeFlag":"NEW","appId":54321}]'
)
V1_SIGNATURE = "232db2615f3d666fe21a8ec971ac7b5402d33b9a925784df3ca654d05f4817de"
# [V2FAQ]: GET, empty body
V2_URI = "https://www.example.com/webhook_uri"
V2_GET_SIGNATURE = "eee2dddcc73c94d699f5e395f4b9d454a069a6855fbfa152e91e88823087200e"
# [VALNEW] v3 docs vector
V3_SECRET = "cfc68c0b-4b4e-4ef8-b764-95350e4ea479"
V3_URI = "https://webhook.site/335453f5-94b3-49d9-b684-a55354d4b8df"
V3_BODY = (
    b'[{"eventId":531833541,"subscriptionId":3923621,"portalId":48807704,"appId":16111050,'
    b'"occurredAt":1752613920733,"subscriptionType":"contact.creation","attemptNumber":0,'
    b'"objectId":138017612137,"changeFlag":"CREATED","changeSource":"CRM_UI","sourceId":"userId:76023669"}]'
)
V3_TIMESTAMP = "1752613922216"
V3_SIGNATURE = "gbj1XPRvUt0noT7i7fXfTzOD4sLzQmf0VT28ZYq0EYg="
V3_NOW = int(V3_TIMESTAMP) + 1_000
# SDK tests/spec/utils/test_signature.py
SDK_BODY = b"{'example_field':'example_value'}"
SDK_V1 = "69fc6631a867edd4f9e9e627fc5c1148e3fbdd8b21837b6d2b8901c1fa57f750"
SDK_V2_POST = "4fe4e3a7d3cf09db53be39d0a58130e2aaba074ec123a9e355b876a689a1c383"
SDK_V3_TIMESTAMP = "1693657560000"
SDK_V3 = "K36dawei4A+QBNolUOqo7s91KQDWQ5MXZ/QufNYuk/Y="


def v3(**overrides: object) -> None:
    args: dict[str, object] = dict(secret=V3_SECRET, method="POST", uri=V3_URI, body=V3_BODY,
                                   timestamp=V3_TIMESTAMP, signature=V3_SIGNATURE, now_ms=V3_NOW)
    args.update(overrides)
    verify_v3(**args)  # type: ignore[arg-type]


# -- the published vectors ---------------------------------------------------------------------------
def test_v1_vector_from_the_faq() -> None:
    assert sign_v1(secret=V1_SECRET, body=V1_BODY) == V1_SIGNATURE
    verify_v1(secret=V1_SECRET, body=V1_BODY, signature=V1_SIGNATURE)


def test_v2_get_vector_from_the_faq() -> None:
    assert sign_v2(secret=V1_SECRET, method="GET", uri=V2_URI, body=b"") == V2_GET_SIGNATURE
    verify_v2(secret=V1_SECRET, method="GET", uri=V2_URI, body=b"", signature=V2_GET_SIGNATURE)


def test_v3_vector_from_the_docs() -> None:
    assert sign_v3(secret=V3_SECRET, method="POST", uri=V3_URI, body=V3_BODY, timestamp=V3_TIMESTAMP) == V3_SIGNATURE
    v3()


def test_sdk_vectors() -> None:
    assert sign_v1(secret=V1_SECRET, body=SDK_BODY) == SDK_V1
    assert sign_v2(secret=V1_SECRET, method="POST", uri=V2_URI, body=SDK_BODY) == SDK_V2_POST
    assert sign_v2(secret=V1_SECRET, method="GET", uri=V2_URI, body=b"") == V2_GET_SIGNATURE
    assert sign_v3(secret=V1_SECRET, method="POST", uri=V2_URI, body=SDK_BODY,
                   timestamp=SDK_V3_TIMESTAMP) == SDK_V3
    verify_v3(secret=V1_SECRET, method="POST", uri=V2_URI, body=SDK_BODY, timestamp=SDK_V3_TIMESTAMP,
              signature=SDK_V3, now_ms=int(SDK_V3_TIMESTAMP))


def test_agrees_with_the_sdk_helper() -> None:
    body = V3_BODY.decode()
    assert Signature.get_signature(V3_SECRET, body, "v3", V3_URI, "POST", V3_TIMESTAMP) == V3_SIGNATURE
    assert Signature.get_signature(V1_SECRET, V1_BODY.decode(), "v1") == V1_SIGNATURE
    assert Signature.get_signature(V1_SECRET, "", "v2", V2_URI, "GET") == V2_GET_SIGNATURE


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200)
_path = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_/.~=&", max_size=40)


@given(secret=st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s), body=_text, path=_path,
       ts=st.integers(min_value=10**12, max_value=10**13))
def test_matches_the_sdk_on_arbitrary_input(secret: str, body: str, path: str, ts: int) -> None:
    """Our signers equal the SDK's for any secret and UTF-8 body (URIs without escapes, which the
    SDK does not decode)."""
    uri = f"https://hooks.example.com/{path}"
    raw = body.encode()
    assert sign_v1(secret=secret, body=raw) == Signature.get_signature(secret, body, "v1")
    assert sign_v2(secret=secret, method="POST", uri=uri, body=raw) == Signature.get_signature(
        secret, body, "v2", uri, "POST")
    assert sign_v3(secret=secret, method="POST", uri=uri, body=raw, timestamp=str(ts)) == Signature.get_signature(
        secret, body, "v3", uri, "POST", str(ts))


# -- tampering -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"body": V3_BODY.replace(b"138017612137", b"138017612138")}, "does not match"),
        ({"body": V3_BODY + b" "}, "does not match"),
        ({"uri": V3_URI + "x"}, "does not match"),
        ({"uri": V3_URI.replace("https://", "http://")}, "does not match"),
        ({"method": "PUT"}, "does not match"),
        ({"secret": V1_SECRET}, "does not match"),
        ({"signature": V3_SIGNATURE[:-2] + "A="}, "does not match"),
        ({"signature": "not base64 ✓"}, "does not match"),
        ({"timestamp": str(int(V3_TIMESTAMP) + 1), "now_ms": V3_NOW}, "does not match"),
    ],
    ids=["body", "body-whitespace", "uri", "scheme", "method", "wrong-secret", "signature", "non-ascii", "ts"],
)
def test_tampering_is_rejected(change: dict[str, object], message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        v3(**change)


def test_legacy_tampering_is_rejected() -> None:
    with pytest.raises(SignatureError):
        verify_v1(secret=V1_SECRET, body=V1_BODY + b" ", signature=V1_SIGNATURE)
    with pytest.raises(SignatureError):
        verify_v1(secret="other", body=V1_BODY, signature=V1_SIGNATURE)
    with pytest.raises(SignatureError):
        verify_v2(secret=V1_SECRET, method="GET", uri=V2_URI + "?a=1", body=b"", signature=V2_GET_SIGNATURE)


def test_signature_case_and_padding_whitespace() -> None:
    verify_v1(secret=V1_SECRET, body=V1_BODY, signature=V1_SIGNATURE.upper())
    v3(signature=f" {V3_SIGNATURE} ")


# -- the clock ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("skew_s", [0, 299, 300, -299, -300])
def test_timestamps_within_five_minutes_either_way_pass(skew_s: int) -> None:
    v3(now_ms=int(V3_TIMESTAMP) + skew_s * 1000)


@pytest.mark.parametrize(("skew_s", "message"), [(301, "old"), (3600, "old"), (-301, "future"), (-86400, "future")])
def test_stale_and_future_timestamps_fail(skew_s: int, message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        v3(now_ms=int(V3_TIMESTAMP) + skew_s * 1000)


def test_the_age_limit_is_configurable() -> None:
    v3(now_ms=int(V3_TIMESTAMP) + 500_000, max_age_s=600)
    with pytest.raises(SignatureError, match="old"):
        v3(now_ms=int(V3_TIMESTAMP) + 61_000, max_age_s=60)


@pytest.mark.parametrize("timestamp", ["", "abc", "1752613922.216", "-1", "1" * 30])
def test_malformed_timestamps_fail(timestamp: str) -> None:
    with pytest.raises(SignatureError):
        v3(timestamp=timestamp)


# -- headers -------------------------------------------------------------------------------------------------
def _headers(**extra: str) -> dict[str, str]:
    return {"X-HubSpot-Signature-v3": V3_SIGNATURE, "X-HubSpot-Request-Timestamp": V3_TIMESTAMP, **extra}


def request(headers: dict[str, str], *, allow_legacy: bool = False, secret: str = V3_SECRET) -> str:
    return verify_request(secret=secret, method="POST", uri=V3_URI, body=V3_BODY, headers=headers,
                          now_ms=V3_NOW, allow_legacy=allow_legacy)


def test_verify_request_uses_v3() -> None:
    assert request(_headers()) == "v3"
    assert request({k.lower(): v for k, v in _headers().items()}) == "v3"  # header names ignore case


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing X-HubSpot-Signature-v3"),
        ({"X-HubSpot-Request-Timestamp": V3_TIMESTAMP}, "missing X-HubSpot-Signature-v3"),
        ({"X-HubSpot-Signature-v3": V3_SIGNATURE}, "missing X-HubSpot-Request-Timestamp"),
        ({"X-HubSpot-Signature": V1_SIGNATURE, "X-HubSpot-Signature-Version": "v1"}, "missing X-HubSpot-Signature-v3"),
    ],
    ids=["none", "no-signature", "no-timestamp", "legacy-not-allowed"],
)
def test_missing_headers_fail(headers: dict[str, str], message: str) -> None:
    with pytest.raises(SignatureError, match=message):
        request(headers)


def test_no_secret_configured_fails_closed() -> None:
    with pytest.raises(SignatureError, match="no client secret"):
        request(_headers(), secret="")


def test_legacy_versions_only_when_allowed() -> None:
    v1 = {"X-HubSpot-Signature": sign_v1(secret=V3_SECRET, body=V3_BODY), "X-HubSpot-Signature-Version": "v1"}
    v2 = {"X-HubSpot-Signature": sign_v2(secret=V3_SECRET, method="POST", uri=V3_URI, body=V3_BODY),
          "X-HubSpot-Signature-Version": "v2"}
    assert request(v1, allow_legacy=True) == "v1"
    assert request(v2, allow_legacy=True) == "v2"
    for headers in (v1, v2):
        with pytest.raises(SignatureError):
            request(headers)
    with pytest.raises(SignatureError, match="unsupported version"):
        request({**v1, "X-HubSpot-Signature-Version": "v9"}, allow_legacy=True)
    with pytest.raises(SignatureError, match="missing"):
        request({}, allow_legacy=True)


def test_a_bad_v3_is_not_rescued_by_a_good_legacy_signature() -> None:
    headers = {**_headers(), "X-HubSpot-Signature-v3": "AAAA" + V3_SIGNATURE[4:],
               "X-HubSpot-Signature": sign_v1(secret=V3_SECRET, body=V3_BODY), "X-HubSpot-Signature-Version": "v1"}
    with pytest.raises(SignatureError, match="v3 signature"):
        request(headers, allow_legacy=True)


def test_errors_never_carry_the_secret_or_the_expected_value() -> None:
    with pytest.raises(SignatureError) as info:
        v3(body=b"[]")
    text = str(info.value)
    assert V3_SECRET not in text
    assert sign_v3(secret=V3_SECRET, method="POST", uri=V3_URI, body=b"[]", timestamp=V3_TIMESTAMP) not in text


# -- URIs -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        ("https://h.example/a%3Ab", "https://h.example/a:b"),
        ("https://h.example/p%2Fq?x=%40y%21%24%27%28%29%2A%2C%3B%3F", "https://h.example/p/q?x=@y!$'()*,;?"),
        ("https://h.example/lower%3a%2f", "https://h.example/lower:/"),
        ("https://h.example/keep%20space%5B%25", "https://h.example/keep%20space%5B%25"),
        ("https://h.example/plain?b=2&a=1", "https://h.example/plain?b=2&a=1"),
    ],
)
def test_uri_decoding_follows_hubspots_table(raw: str, decoded: str) -> None:
    assert decode_uri(raw) == decoded


def test_v3_signs_the_decoded_uri() -> None:
    encoded = "https://h.example/hook%3Fa?email=a%40b.example"
    signature = sign_v3(secret="s", method="POST", uri="https://h.example/hook?a?email=a@b.example", body=b"[]",
                        timestamp="1")
    verify_v3(secret="s", method="POST", uri=encoded, body=b"[]", timestamp="1", signature=signature, now_ms=1)


def test_query_order_matters() -> None:
    signature = sign_v3(secret="s", method="POST", uri="https://h.example/hook?a=1&b=2", body=b"[]", timestamp="1")
    with pytest.raises(SignatureError):
        verify_v3(secret="s", method="POST", uri="https://h.example/hook?b=2&a=1", body=b"[]", timestamp="1",
                  signature=signature, now_ms=1)
