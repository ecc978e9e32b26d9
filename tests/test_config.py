"""The run configuration: where it is read from, validation, errors, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from framework.config import ConfigError, RunConfig, load_config, parse_config


def test_defaults_without_any_file(tmp_path: Path) -> None:
    config, source = load_config(directory=tmp_path)
    assert source == "(defaults)"
    assert config == RunConfig()
    assert config.bus == "local://"
    assert config.workers is None
    assert config.grace_period == 5.0
    assert config.llm.backend == "offline"


def test_framework_toml_wins_over_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.framework]\nname = "from-pyproject"\n')
    config, source = load_config(directory=tmp_path)
    assert (config.name, Path(source).name) == ("from-pyproject", "pyproject.toml")
    (tmp_path / "framework.toml").write_text('name = "from-framework-toml"\n')
    config, source = load_config(directory=tmp_path)
    assert (config.name, Path(source).name) == ("from-framework-toml", "framework.toml")


def test_a_pyproject_without_the_table_means_defaults(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    assert load_config(directory=tmp_path)[1] == "(defaults)"


def test_config_option_reads_a_file_or_a_pyproject(tmp_path: Path) -> None:
    plain = tmp_path / "ops.toml"
    plain.write_text(
        'bus = "local://"\ngrace_period = 1.5\n'
        '[[workers]]\ntype = "echo"\nname = "echo-1"\n[workers.config]\nprefix = ">"\n'
        '[publishers.jsonl]\npath = "events.jsonl"\n'
    )
    config, source = load_config(plain)
    assert source == str(plain)
    assert config.grace_period == 1.5
    assert config.workers is not None
    assert config.workers[0].type == "echo"
    assert config.workers[0].name == "echo-1"
    assert config.workers[0].config == {"prefix": ">"}
    assert config.publishers.jsonl.path == Path("events.jsonl")

    project = tmp_path / "sub" / "pyproject.toml"
    project.parent.mkdir()
    project.write_text('[tool.framework]\nname = "p"\n')
    assert load_config(project)[0].name == "p"


def test_a_missing_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.toml")


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "framework.toml"
    bad.write_text("name = \n")
    with pytest.raises(ConfigError) as info:
        load_config(directory=tmp_path)
    assert info.value.file == str(bad)
    assert "not valid TOML" in info.value.reason


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('nmae = "x"\n', "nmae", "unknown key"),
        ("grace_period = -1\n", "grace_period", "greater than or equal to 0"),
        ('[[workers]]\nname = "x"\n', "workers.0.type", "Field required"),
        ('[[workers]]\ntype = "echo"\nactiv = false\n', "workers.0.activ", "unknown key"),
        ("[publishers.console]\nenabled = 3\n", "publishers.console.enabled", "boolean"),
    ],
)
def test_bad_values_name_the_file_the_key_and_the_reason(
    tmp_path: Path, text: str, key: str, reason: str
) -> None:
    (tmp_path / "framework.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(directory=tmp_path)
    assert info.value.file.endswith("framework.toml")
    assert info.value.key == key
    assert reason in info.value.reason
    assert str(info.value).startswith(f"{info.value.file}: {key}: ")


def test_env_values_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_FRAMEWORK_TOKEN", "s3cret")
    config = parse_config(
        {"workers": [{"type": "x", "config": {"token": {"env": "TEST_FRAMEWORK_TOKEN"}}}]},
        "framework.toml",
    )
    assert config.workers is not None
    assert config.workers[0].config == {"token": "s3cret"}

    monkeypatch.delenv("TEST_FRAMEWORK_TOKEN")
    with pytest.raises(ConfigError) as info:
        parse_config({"plugins": {"p": {"token": {"env": "TEST_FRAMEWORK_TOKEN"}}}}, "f.toml")
    assert info.value.key == "plugins.p.token"
    assert "TEST_FRAMEWORK_TOKEN is not set" in info.value.reason


def test_a_secret_never_appears_in_a_validation_error() -> None:
    class Settings(BaseModel):
        api_key: SecretStr
        retries: int

    from pydantic import ValidationError

    from framework.config import validation_error

    with pytest.raises(ValidationError) as info:
        Settings.model_validate({"api_key": "sk-live-123", "retries": "sk-live-123"})
    error = validation_error(info.value, "framework.toml", "workers.0.config")
    assert error.key == "workers.0.config.retries"
    assert "sk-live-123" not in str(error)
    assert "sk-live-123" not in repr(Settings(api_key="sk-live-123", retries=1))


def test_a_pyproject_whose_tool_is_not_a_table_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text("tool = 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(directory=tmp_path)
    assert (info.value.key, info.value.reason) == ("tool", "must be a table")


def test_config_option_on_a_pyproject_without_the_table_says_so(tmp_path: Path) -> None:
    project = tmp_path / "pyproject.toml"
    project.write_text('[project]\nname = "x"\n')
    with pytest.raises(ConfigError) as info:
        load_config(project)
    assert info.value.key == "tool.framework"
    assert "add [tool.framework]" in info.value.reason


def test_settings_given_to_a_worker_without_a_config_model_are_not_echoed() -> None:
    from framework import BaseWorker

    with pytest.raises(TypeError) as info:
        BaseWorker("w", config={"token": "sk-super-secret-123"})
    assert "takes no config" in str(info.value)
    assert "['token']" in str(info.value)
    assert "sk-super-secret-123" not in str(info.value)


def test_an_unknown_key_is_reported_before_the_missing_one_it_hides(tmp_path: Path) -> None:
    (tmp_path / "framework.toml").write_text('[[workers]]\ntyp = "echo"\n')
    with pytest.raises(ConfigError) as info:
        load_config(directory=tmp_path)
    assert info.value.key == "workers.0.typ"
    assert "unknown key" in info.value.reason


def test_an_unknown_worker_setting_points_at_the_worker_not_the_docs() -> None:
    from pydantic import ConfigDict, ValidationError

    from framework.config import validation_error

    class Settings(BaseModel):
        model_config = ConfigDict(extra="forbid")
        times: int = 1

    with pytest.raises(ValidationError) as info:
        Settings.model_validate({"tims": 2})
    error = validation_error(info.value, "framework.toml", "workers.0.config")
    assert error.key == "workers.0.config.tims"
    assert "the worker's settings (its config_model)" in error.reason


def test_a_validators_value_error_is_its_message_without_pydantics_prefix() -> None:
    from pydantic import ValidationError, field_validator

    from framework.config import validation_error

    class Settings(BaseModel):
        stop: list[str] = []

        @field_validator("stop")
        @classmethod
        def _at_most_four(cls, value: list[str]) -> list[str]:
            if len(value) > 4:
                raise ValueError(f"stop takes at most 4 strings, got {len(value)}")
            return value

    with pytest.raises(ValidationError) as info:
        Settings.model_validate({"stop": list("abcde")})
    error = validation_error(info.value, "framework.toml", "plugins.p")
    assert (error.key, error.reason) == ("plugins.p.stop", "stop takes at most 4 strings, got 5")
    assert str(error) == "framework.toml: plugins.p.stop: stop takes at most 4 strings, got 5"


SIGNING_SECRET = "a-bus-secret-nobody-may-see-0042"


def _secret_error(tmp_path: Path, text: str) -> ConfigError:
    (tmp_path / "framework.toml").write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(directory=tmp_path)
    return info.value


def test_bus_secret_one_a_list_or_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from framework.config import bus_secrets

    monkeypatch.delenv("FRAMEWORK_BUS_SECRET", raising=False)
    assert bus_secrets(RunConfig()) == []
    config = parse_config({"bus_secret": SIGNING_SECRET}, "f.toml")
    assert [s.get_secret_value() for s in bus_secrets(config)] == [SIGNING_SECRET]
    monkeypatch.setenv("NEW_SECRET", "n" * 16)
    monkeypatch.setenv("OLD_SECRET", "o" * 40)
    (tmp_path / "framework.toml").write_text(
        'bus_secret = [{ env = "NEW_SECRET" }, { env = "OLD_SECRET" }]\n'
    )
    config, _ = load_config(directory=tmp_path)
    assert [s.get_secret_value() for s in bus_secrets(config)] == ["n" * 16, "o" * 40]
    # FRAMEWORK_BUS_SECRET counts only when the configuration sets none.
    monkeypatch.setenv("FRAMEWORK_BUS_SECRET", "e" * 20)
    assert [s.get_secret_value() for s in bus_secrets(config)] == ["n" * 16, "o" * 40]
    assert [s.get_secret_value() for s in bus_secrets(RunConfig())] == ["e" * 20]
    given = {"FRAMEWORK_BUS_SECRET": "g" * 16}
    assert [s.get_secret_value() for s in bus_secrets(RunConfig(), given)] == ["g" * 16]
    assert bus_secrets(RunConfig(), {}) == []


@pytest.mark.parametrize(
    ("text", "key", "reason"),
    [
        ('bus_secret = ""', "bus_secret", "the secret is empty: use at least 16 random bytes"),
        (
            'bus_secret = "short-secret"',
            "bus_secret",
            "the secret is 12 bytes, shorter than the 16 required (make one with: python -c",
        ),
        (
            f'bus_secret = ["{SIGNING_SECRET}", "tiny"]',
            "bus_secret",
            "secret 2 of 2: the secret is 4 bytes",
        ),
        ("bus_secret = []", "bus_secret", "the list is empty: give at least one secret"),
        ("bus_secret = 1234567890123456789", "bus_secret", 'a string, { env = "NAME" }, or a'),
        ('bus_secret = { file = "x" }', "bus_secret", 'a string, { env = "NAME" }, or a list'),
        (
            'bus_secret = ["ok-ok-ok-ok-ok-ok-ok", { env = "UNSET_SECRET_VAR" }]',
            "bus_secret.1",
            "environment variable UNSET_SECRET_VAR is not set (export it first)",
        ),
    ],
)
def test_a_bad_bus_secret_is_a_config_error_that_names_the_key_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, key: str, reason: str
) -> None:
    monkeypatch.delenv("UNSET_SECRET_VAR", raising=False)
    error = _secret_error(tmp_path, text + "\n")
    assert error.key == key
    assert reason in error.reason
    assert "short-secret" not in str(error) and "tiny" not in str(error)


def test_a_bad_framework_bus_secret_is_a_config_error() -> None:
    from framework.config import bus_secrets

    for value, reason in (("", "the secret is empty"), ("too-short", "the secret is 9 bytes")):
        with pytest.raises(ConfigError) as info:
            bus_secrets(RunConfig(), {"FRAMEWORK_BUS_SECRET": value})
        assert (info.value.file, info.value.key) == ("environment", "FRAMEWORK_BUS_SECRET")
        assert reason in info.value.reason
        assert "too-short" not in str(info.value)


def test_the_bus_secret_is_never_shown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THE_SECRET", SIGNING_SECRET)
    (tmp_path / "framework.toml").write_text(
        f'bus_secret = ["{SIGNING_SECRET[::-1]}", {{ env = "THE_SECRET" }}]\n'
    )
    config, _ = load_config(directory=tmp_path)
    for text in (repr(config), str(config), config.model_dump_json(), str(config.model_dump())):
        assert SIGNING_SECRET not in text and SIGNING_SECRET[::-1] not in text
        assert "**********" in text
    # A worker's bad value next to it: the error is about that value, not the secret.
    (tmp_path / "framework.toml").write_text(
        f'bus_secret = "{SIGNING_SECRET}"\ngrace_period = "soon"\n'
    )
    with pytest.raises(ConfigError) as info:
        load_config(directory=tmp_path)
    assert info.value.key == "grace_period" and SIGNING_SECRET not in str(info.value)


def test_framework_run_exits_2_for_a_short_bus_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from framework.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "framework.toml").write_text('bus_secret = "only-12-byte"\n')
    result = CliRunner().invoke(
        cli, ["run", "--job", "x"], env={"FRAMEWORK_DISABLE_PLUGIN_AUTOLOAD": "1"}
    )
    assert result.exit_code == 2
    assert "framework.toml: bus_secret: the secret is 12 bytes" in result.stderr
    assert "only-12-byte" not in result.output
