"""ProcessorSettings: the SDK's own settings, a strict subset of the orchestrator's."""

from __future__ import annotations

import pytest

from core.settings import Settings
from frame_buffer_sdk.errors import ConfigurationError
from frame_buffer_sdk.settings import ProcessorSettings, load_processor_settings


def test_a_processor_reads_only_what_it_uses() -> None:
    fields = set(ProcessorSettings.model_fields)
    assert fields < set(Settings.model_fields)
    for orchestrator_only in ("bridge_batch_size", "store", "bp_critical", "api_token", "capture_stream"):
        assert orchestrator_only not in fields
    assert {"kafka_broker", "redis_url", "orchestrator_url", "orchestrator_token", "results_topic"} <= fields


def test_shared_fields_are_one_definition() -> None:
    for name, field in ProcessorSettings.model_fields.items():
        assert Settings.model_fields[name].default == field.default, name
        assert Settings.model_fields[name].description == field.description, name


def test_metrics_are_exported_by_default() -> None:
    assert ProcessorSettings().processor_metrics_port == 9200


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"KAFKA_BROKER": "no-port"}, "KAFKA_BROKER"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL"),
        ({"ORCHESTRATOR_TOKEN": "short"}, "ORCHESTRATOR_TOKEN"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        ({"RESULTS_TOPIC": "bad topic"}, "RESULTS_TOPIC"),
    ],
)
def test_bad_values_fail_fast_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], name: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigurationError, match=name):
        load_processor_settings()


def test_a_password_in_the_redis_url_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2-secret@localhost:6379/0")
    settings = load_processor_settings()
    assert "hunter2" not in repr(settings) and "hunter2" not in settings.redis_url
    assert settings.redis_password is not None and settings.redis_password.get_secret_value() == "hunter2-secret"
