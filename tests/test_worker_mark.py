"""The API's mark, checked before a batch's transaction (worker/authn.ApiMark): pure, no services.

Only a valid HMAC of the API over this very key and value marks a message; everything else is left to
``authn.authenticate`` in the transaction, as before.
"""

from __future__ import annotations

import orjson
from pydantic import SecretStr

from tests.support import api_headers, code, harvested_event
from trace_service.contract import signing
from trace_service.contract.events import build_catalogue
from trace_service.settings import Settings
from trace_service.worker.authn import ApiMark
from trace_service.worker.service import Record, plan

SETTINGS = Settings(key_pepper=SecretStr("pepper-for-the-mark-test"))


def _planned(records: list[Record], settings: Settings = SETTINGS) -> list[bool]:
    decoded, dead = plan(build_catalogue(), records, future_skew_seconds=300, mark=ApiMark(settings))
    assert not dead
    return [d.api_verified for d in decoded]


def _message(**over: object) -> tuple[bytes, bytes]:
    event = harvested_event(code(length=8))
    return event["operator"].encode(), orjson.dumps(event | over)


def test_the_apis_own_signature_is_marked() -> None:
    key, value = _message()
    assert _planned([Record("t", 0, 0, key, value, tuple(api_headers(SETTINGS, key, value)))]) == [True]


def test_a_changed_value_a_changed_key_or_another_secret_is_not() -> None:
    key, value = _message()
    headers = tuple(api_headers(SETTINGS, key, value))
    other_key, other_value = _message()
    other = Settings(key_pepper=SecretStr("another-pepper"))
    assert _planned(
        [
            Record("t", 0, 0, key, other_value, headers),
            Record("t", 0, 1, other_key, value, headers),
        ]
    ) == [False, False]
    assert _planned([Record("t", 0, 2, key, value, headers)], other) == [False]


def test_integrators_and_unsigned_messages_are_left_to_the_transaction() -> None:
    key, value = _message()
    integrator = tuple(signing.sign_headers("int_1", "secret", key, value))
    assert _planned([Record("t", 0, 0, key, value, integrator), Record("t", 0, 1, key, value, ())]) == [False, False]


def test_without_a_secret_nothing_is_marked() -> None:
    key, value = _message()
    headers = tuple(api_headers(SETTINGS, key, value))
    assert _planned([Record("t", 0, 0, key, value, headers)], Settings()) == [False]
