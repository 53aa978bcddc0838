"""Bodies that parse but cannot be stored back as JSON are refused with a 400 reason."""

from __future__ import annotations

import pytest

from webhooks.payload import _loads
from worker.errors import PayloadError


@pytest.mark.parametrize(("body", "reason"), [
    (b'[{"objectId": 1e400}]', "number out of range"),
    (b'[{"objectId": -1E+999}]', "number out of range"),
    (b'[{"propertyValue": "\\ud800"}]', "invalid unicode escape"),
    (b"[" + b'{"a":' * 40 + b"1" + b"}" * 40 + b"]", "levels deep"),
])
def test_unstorable_bodies_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(PayloadError, match=reason):
        _loads(body)


@pytest.mark.parametrize("body", [
    b'[{"objectId": 1.5e3}]',
    b'[' + b",".join(b'{"eventId": %d, "mergedObjectIds": [1, 2]}' % i for i in range(100)) + b']',
])
def test_ordinary_bodies_pass(body: bytes) -> None:
    assert isinstance(_loads(body), list)
