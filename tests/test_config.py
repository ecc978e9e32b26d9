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
