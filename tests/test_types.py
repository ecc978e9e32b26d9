"""The small shared data types: JobStatus and the activation arguments."""

from __future__ import annotations

import json
from enum import StrEnum

import pydantic
import pytest

from framework import (
    JobStatus,
    LLMWorkerActivationArgs,
    WorkerActivationArgs,
    WorkerErrorData,
    WorkerReadyData,
    WorkerRegistryEntry,
)


def test_job_status_is_a_str_enum_with_lower_case_values() -> None:
    assert issubclass(JobStatus, StrEnum)
    assert JobStatus.COMPLETED == "completed"
    assert JobStatus.CANCELLED == "cancelled"
    assert JobStatus.FAILED == "failed"
    assert JobStatus.ERROR == "error"
    assert [s.value for s in JobStatus] == ["completed", "cancelled", "failed", "error"]
    assert str(JobStatus.FAILED) == "failed"
    assert f"{JobStatus.ERROR}" == "error"


def test_job_status_round_trips_from_its_value() -> None:
    assert JobStatus("cancelled") is JobStatus.CANCELLED
    assert json.dumps({"status": JobStatus.COMPLETED}) == '{"status": "completed"}'
    with pytest.raises(ValueError, match="COMPLETED"):
        JobStatus("COMPLETED")


def test_worker_activation_args_from_dict_ignores_unknown_keys() -> None:
    args = WorkerActivationArgs.from_dict({"metadata": {"user": "ann"}, "surprise": 1})
    assert args.metadata == {"user": "ann"}
    assert not hasattr(args, "surprise")
    assert args.to_dict() == {"metadata": {"user": "ann"}}


def test_worker_activation_args_from_none_or_empty() -> None:
    assert WorkerActivationArgs.from_dict(None).metadata is None
    assert WorkerActivationArgs.from_dict({}).to_dict() == {"metadata": None}
    assert WorkerActivationArgs().metadata is None


def test_worker_activation_args_still_validates_known_keys() -> None:
    with pytest.raises(pydantic.ValidationError):
        WorkerActivationArgs.from_dict({"metadata": "not a dict"})


def test_llm_activation_args_from_dict_ignores_unknown_keys_and_round_trips() -> None:
    messages = [{"role": "user", "content": "hi"}]
    args = LLMWorkerActivationArgs.from_dict(
        {"messages": messages, "run_llm": False, "metadata": {"k": 1}, "future_field": [1, 2]}
    )
    assert args.messages == messages
    assert args.run_llm is False
    assert args.metadata == {"k": 1}
    data = args.to_dict()
    assert data == {"metadata": {"k": 1}, "messages": messages, "run_llm": False}
    assert LLMWorkerActivationArgs.from_dict(data) == args


def test_run_llm_defaults_to_true_when_messages_are_given() -> None:
    args = LLMWorkerActivationArgs(messages=[{"role": "user", "content": "hi"}])
    assert args.run_llm is True
    assert LLMWorkerActivationArgs.from_dict({"messages": []}).run_llm is True


def test_run_llm_defaults_to_false_without_messages() -> None:
    assert LLMWorkerActivationArgs().run_llm is False
    assert LLMWorkerActivationArgs.from_dict({"metadata": {"a": 1}}).run_llm is False
    assert LLMWorkerActivationArgs.from_dict(None).to_dict()["run_llm"] is False


def test_run_llm_given_explicitly_wins() -> None:
    assert LLMWorkerActivationArgs(messages=[{"role": "user"}], run_llm=False).run_llm is False
    assert LLMWorkerActivationArgs(run_llm=True).run_llm is True


def test_llm_activation_args_is_a_worker_activation_args() -> None:
    assert isinstance(LLMWorkerActivationArgs(), WorkerActivationArgs)


def test_ready_and_error_data_are_frozen() -> None:
    ready = WorkerReadyData(worker_name="w", runner="r")
    error = WorkerErrorData(worker_name="w", error="boom")
    entry = WorkerRegistryEntry(name="w")
    assert (entry.parent, entry.active, entry.bridged, entry.started_at) == (
        None,
        False,
        False,
        None,
    )
    for model, field in ((ready, "runner"), (error, "error"), (entry, "name")):
        with pytest.raises(pydantic.ValidationError):
            setattr(model, field, "changed")
    assert ready == WorkerReadyData(worker_name="w", runner="r")
