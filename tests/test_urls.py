"""``framework.urls.redact_url``: passwords in URLs never reach a message or a log."""

from __future__ import annotations

import pytest

from framework.urls import redact_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:s3cret@host/1", "rediss://user:***@host/1"),
        ("redis://alice:s3cret@h:6379/0?db=1", "redis://alice:***@h:6379/0?db=1"),
        ("rediss://:p%40ss@h:6380/0", "rediss://:***@h:6380/0"),
        ("redis://:p@ss@h:6380/0", "redis://:***@h:6380/0"),
        (
            "redis://host:6379/0?password=s3cret&namespace=a",
            "redis://host:6379/0?password=***&namespace=a",
        ),
        ("redis://h/0?pass%77ord=s3cret", "redis://h/0?pass%77ord=***"),
        ("redis://u:one@h/0?password=two", "redis://u:***@h/0?password=***"),
    ],
)
def test_passwords_are_hidden(url: str, expected: str) -> None:
    assert redact_url(url) == expected


@pytest.mark.parametrize(
    "url",
    [
        "local://",
        "redis://h:6379/0",
        "redis://alice@h:6379/0",
        "redis://h/0?password_file=/run/secret&x=1",
        "redis://h/0?a=%20b&&c",
    ],
)
def test_a_url_without_a_password_is_unchanged(url: str) -> None:
    assert redact_url(url) == url


def test_an_unparsable_url_is_not_echoed() -> None:
    assert redact_url("redis://[::1:6379/0?password=s3cret") == "<an invalid URL>"


@pytest.mark.parametrize(
    ("url", "pieces"),
    [
        ("redis://:sec#ret@host:6379/0", ["sec", "ret"]),
        ("redis://:sec/ret@host:6379/0", ["sec", "ret"]),
        ("redis://:sec?ret@host:6379/0", ["sec", "ret"]),
        ("redis://user:sec#r/e?t@x@host/0?namespace=n", ["sec", "r/e", "t@x"]),
        ("rediss://:#secret@host:6380/0?ssl_cert_reqs=none", ["secret"]),
        ("redis://host/0?password=sec#ret", ["sec", "ret"]),
    ],
)
def test_a_password_with_unencoded_delimiters_is_never_printed(url: str, pieces: list[str]) -> None:
    redacted = redact_url(url)
    assert "***" in redacted
    for piece in pieces:
        assert piece not in redacted, redacted


def test_an_at_sign_outside_the_userinfo_hides_more_never_less() -> None:
    assert redact_url("redis://h:6379/0?x=a@b") == "redis://h:***@b"
    assert redact_url("redis://h/0?password=x@y") == "redis://h/0?password=***"
