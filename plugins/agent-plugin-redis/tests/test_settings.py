"""The bus URL: our parameters, what goes on to redis-py, the password and its redaction."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from agent_plugin_redis._settings import (
    DEFAULT_HEARTBEAT,
    DEFAULT_MAX_MESSAGE_SIZE,
    DEFAULT_MISSES,
    DEFAULT_NAMESPACE,
    PASSWORD_ENV,
    RedisBusSettings,
    SettingsError,
)
from agent_plugin_redis.bus import RedisBus
from click.testing import CliRunner
from conftest import RedisServer
from redis.connection import parse_url

from framework.cli import cli
from framework.urls import redact_url


@pytest.fixture(autouse=True)
def _no_password_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PASSWORD_ENV, raising=False)


def test_defaults() -> None:
    settings = RedisBusSettings.from_url("redis://127.0.0.1:6379/0")
    assert settings.url == "redis://127.0.0.1:6379/0"
    assert settings.heartbeat == DEFAULT_HEARTBEAT == 1.0
    assert settings.misses == DEFAULT_MISSES == 3
    assert settings.max_message_size == DEFAULT_MAX_MESSAGE_SIZE == 1024 * 1024
    assert settings.namespace == DEFAULT_NAMESPACE == "framework"


def test_our_parameters_are_parsed_and_taken_out() -> None:
    settings = RedisBusSettings.from_url(
        "rediss://h.example:6380/3?heartbeat=0.25&misses=5&max_message_size=2048&namespace=team-a.v1"
    )
    assert settings.heartbeat == 0.25
    assert settings.misses == 5
    assert settings.max_message_size == 2048
    assert settings.namespace == "team-a.v1"
    assert settings.url == "rediss://h.example:6380/3"


def test_other_parameters_pass_through_to_redis_py() -> None:
    settings = RedisBusSettings.from_url(
        "rediss://h:6380/2?heartbeat=0.5&ssl_ca_certs=/etc/ca.pem&socket_timeout=3"
        "&namespace=x&ssl_cert_reqs=required"
    )
    assert "heartbeat" not in settings.url and "namespace" not in settings.url
    options = parse_url(settings.url)
    assert options["ssl_ca_certs"] == "/etc/ca.pem"
    assert options["socket_timeout"] == 3.0
    assert options["ssl_cert_reqs"] == "required"
    assert (options["host"], options["port"], options["db"]) == ("h", 6380, 2)


def test_the_bus_takes_its_settings_from_the_url() -> None:
    bus = RedisBus("redis://127.0.0.1:1/0?heartbeat=0.3&misses=2&namespace=abc")
    assert (bus.settings.heartbeat, bus.settings.misses, bus.settings.namespace) == (0.3, 2, "abc")
    assert bus.dropped_messages == 0


@pytest.mark.parametrize(
    ("query", "name", "why"),
    [
        ("heartbeat=0", "heartbeat", "out of range"),
        ("heartbeat=-1", "heartbeat", "out of range"),
        ("heartbeat=3601", "heartbeat", "out of range"),
        ("heartbeat=61", "heartbeat", "use 0.01 to 60"),
        ("heartbeat=30&misses=3", "heartbeat", "lost only after 90 s"),
        ("heartbeat=nan", "heartbeat", "out of range"),
        ("heartbeat=inf", "heartbeat", "out of range"),
        ("heartbeat=fast", "heartbeat", "must be a number"),
        ("heartbeat=", "heartbeat", "must be a number"),
        ("misses=0", "misses", "out of range"),
        ("misses=1001", "misses", "out of range"),
        ("misses=2.5", "misses", "must be a whole number"),
        ("misses=many", "misses", "must be a whole number"),
        ("max_message_size=1023", "max_message_size", "out of range"),
        ("max_message_size=999999999999", "max_message_size", "out of range"),
        ("max_message_size=8388609", "max_message_size", "client-output-buffer-limit"),
        ("max_message_size=40000000", "max_message_size", "use 1024 to 8388608"),
        ("max_message_size=1MB", "max_message_size", "must be a whole number"),
        ("namespace=", "namespace", "use 1-64 letters"),
        ("namespace=a:b", "namespace", "use 1-64 letters"),
        ("namespace=a*", "namespace", "use 1-64 letters"),
        ("namespace=" + "n" * 65, "namespace", "use 1-64 letters"),
    ],
)
def test_bad_parameters_are_named(query: str, name: str, why: str) -> None:
    with pytest.raises(SettingsError) as caught:
        RedisBusSettings.from_url(f"redis://127.0.0.1:6379/0?{query}")
    text = str(caught.value)
    assert f"bus URL parameter {name}=" in text
    assert why in text


def test_out_of_range_message_gives_the_exact_limits() -> None:
    """A user who set a too-big max_message_size is told the real maximum, not a rounded
    float in exponent notation."""
    with pytest.raises(SettingsError) as caught:
        RedisBusSettings.from_url("redis://h/0?max_message_size=8388609")
    assert "use 1024 to 8388608" in str(caught.value)


def test_the_bus_refuses_a_bad_url_when_made() -> None:
    with pytest.raises(SettingsError, match="misses"):
        RedisBus("redis://127.0.0.1:6379/0?misses=0")


@pytest.mark.parametrize("url", ["http://h:6379/0", "unix:///tmp/redis.sock", "h:6379"])
def test_only_redis_schemes(url: str) -> None:
    with pytest.raises(SettingsError, match=r"redis:// or rediss://"):
        RedisBusSettings.from_url(url)


def test_password_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "pa ss/@:")
    settings = RedisBusSettings.from_url("redis://127.0.0.1:6379/0?heartbeat=0.5")
    assert parse_url(settings.url)["password"] == "pa ss/@:"
    assert "pa ss" not in redact_url(settings.url)


def test_password_in_the_url_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "from-env")
    settings = RedisBusSettings.from_url("redis://:from-url@127.0.0.1:6379/0")
    assert parse_url(settings.url)["password"] == "from-url"
    assert "from-env" not in settings.url


def test_empty_environment_password_is_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PASSWORD_ENV, "")
    settings = RedisBusSettings.from_url("redis://127.0.0.1:6379/0")
    assert settings.url == "redis://127.0.0.1:6379/0"


def test_environment_password_with_a_username_only_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ACL user in the URL and no password there: the URL "has no password", so the
    environment's is used (the module says so), for that user."""
    monkeypatch.setenv(PASSWORD_ENV, "s3cret")
    options = parse_url(RedisBusSettings.from_url("redis://alice@127.0.0.1:6379/0").url)
    assert options.get("username") == "alice"
    assert options.get("password") == "s3cret"


def test_redact_hides_a_password_given_as_a_query_parameter() -> None:
    """redis-py takes ``?password=`` too (``parse_url`` reads it), so a URL written that way
    authenticates; its password must not reach logs and error messages either."""
    url = "redis://h:6379/0?password=s3cret"
    assert parse_url(url)["password"] == "s3cret"
    assert "s3cret" not in redact_url(RedisBusSettings.from_url(url).url)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("foo=bar", "bus URL parameter 'foo' is not one the Redis bus"),
        ("socket_timeout=abc", "bus URL parameter socket_timeout='abc' is not a value redis-py"),
        ("ssl_cert_reqs=none", "the ssl_* parameters need a rediss:// URL"),
    ],
)
def test_a_parameter_redis_py_refuses_is_a_settings_error(query: str, expected: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(expected)):
        RedisBusSettings.from_url(f"redis://127.0.0.1:6379/0?{query}")


@pytest.mark.parametrize("query", ["foo=bar", "socket_timeout=abc"])
def test_framework_run_stops_with_exit_2_on_a_parameter_redis_py_refuses(
    query: str, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    url = f"redis://:s3cret@127.0.0.1:{redis_server.port}/0?{query}"
    result = CliRunner().invoke(
        cli,
        ["-p", "agent_plugin_redis", "run", "--bus", url, "--job", "echo"],
        env={"FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1", "FRAMEWORK_PLUGINS": None},
    )
    assert result.exit_code == 2, result.output
    assert "framework: configuration error: --bus:" in result.stderr
    assert query.split("=")[0] in result.stderr
    assert "Traceback" not in result.output and "s3cret" not in result.output
