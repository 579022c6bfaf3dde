"""The command line: every subcommand has help, and bad configuration fails naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from core.settings import Settings

SUBCOMMANDS = [
    [],
    ["worker"],
    ["bridge"],
    ["relay"],
    ["capture"],
    ["processor"],
    ["dev"],
    ["check-config"],
    ["migrate"],
    ["stack"],
    ["stack", "up"],
    ["stack", "down"],
    ["stack", "serve"],
    ["status"],
    ["dead-letters"],
    ["dead-letters", "list"],
    ["dead-letters", "replay"],
]


@pytest.mark.parametrize("args", SUBCOMMANDS, ids=lambda a: " ".join(a) or "main")
def test_help_of_every_subcommand(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert f"frame-orchestrator {' '.join(args)}".strip() in result.output.replace("main", "frame-orchestrator")


def test_main_help_lists_the_public_subcommands_only() -> None:
    output = CliRunner().invoke(main, ["--help"]).output
    for name in (
        "worker",
        "bridge",
        "capture",
        "processor",
        "dev",
        "check-config",
        "migrate",
        "stack",
        "status",
        "dead-letters",
    ):
        assert name in output
    stack_help = CliRunner().invoke(main, ["stack", "--help"]).output
    assert "up" in stack_help and "down" in stack_help
    assert "serve" not in stack_help


@pytest.mark.parametrize(
    ("args", "env", "variable"),
    [
        (["check-config"], {"CAPTURED_PARTITIONS": "0"}, "CAPTURED_PARTITIONS"),
        (["worker"], {"CAPTURED_PARTITIONS": "0"}, "CAPTURED_PARTITIONS"),
        (["bridge"], {"REDIS_URL": "http://nope"}, "REDIS_URL"),
        (["capture"], {"KAFKA_BROKER": "no-port"}, "KAFKA_BROKER"),
        (["processor", "brightness"], {"LOG_LEVEL": "loud"}, "LOG_LEVEL"),
        (["dev"], {"BROKER_SESSION_TIMEOUT": "120"}, "BROKER_SESSION_TIMEOUT"),
    ],
)
def test_bad_config_exits_non_zero_naming_the_variable(args: list[str], env: dict[str, str], variable: str) -> None:
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 2
    assert variable in result.stderr
    assert "invalid configuration" in result.stderr


def test_check_config_prints_every_variable_with_secrets_redacted() -> None:
    env = {
        "REDIS_URL": "redis://user:s3cret@redis.internal:6379/0",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "https://tracer:t0ken@otel.internal:4318",
        "DEFAULT_CAPABILITIES": "a, b",
    }
    result = CliRunner().invoke(main, ["check-config"], env=env)
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output and "t0ken" not in result.output
    # The password moves out of the URL into REDIS_PASSWORD, which prints redacted.
    assert "REDIS_URL=redis://***@redis.internal:6379/0" in result.output
    assert "REDIS_PASSWORD=***" in result.output
    assert "DEFAULT_CAPABILITIES=a,b" in result.output
    printed = {line.split("=", 1)[0] for line in result.output.splitlines() if "=" in line}
    assert printed == {name.upper() for name in Settings.model_fields}


def test_unknown_processor_kind_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["processor", "teleporter"])
    assert result.exit_code == 2
    assert "teleporter" in result.output


def test_dev_rejects_unknown_sample_processors_before_starting_anything() -> None:
    result = CliRunner().invoke(main, ["dev", "--processors", "brightness,teleporter"])
    assert result.exit_code == 2
    assert "teleporter" in result.output


def test_stack_down_without_a_stack_is_a_no_op(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["stack", "down", "--env-file", str(tmp_path / "none.env")])
    assert result.exit_code == 0
    assert "nothing to stop" in result.output


def test_stack_down_refuses_a_file_it_did_not_write(tmp_path: Path) -> None:
    env_file = tmp_path / "stack.env"
    env_file.write_text("KAFKA_BROKER=kafka://localhost:9092\n")
    result = CliRunner().invoke(main, ["stack", "down", "--env-file", str(env_file)])
    assert result.exit_code == 1
    assert "FRAME_STACK_PID" in result.output
    assert env_file.exists()


def test_processor_kinds_and_dev_capabilities_match_the_samples() -> None:
    from devtools.dev import SAMPLE_CAPABILITIES
    from sample_processors.samples import SAMPLE_KINDS, build_sample

    processor_command = main.commands["processor"]
    kind = next(p for p in processor_command.params if p.name == "kind")
    assert list(kind.type.choices) == list(SAMPLE_KINDS)  # type: ignore[attr-defined]
    assert set(SAMPLE_CAPABILITIES) == set(SAMPLE_KINDS)
    for sample, capability in SAMPLE_CAPABILITIES.items():
        # dev's capture asks for this capability so that frames reach the sample.
        assert capability in build_sample(Settings(), sample).spec.capabilities


def test_migrate_names_its_source() -> None:
    result = CliRunner().invoke(main, ["migrate", "--dry-run"])
    assert result.exit_code == 2
    assert "--from-v1" in result.output


def test_worker_help_shows_fausts_worker_flags() -> None:
    output = CliRunner().invoke(main, ["worker", "--help"]).output
    for flag in ("-l, --loglevel", "-p, --web-port", "-D, --datadir"):
        assert flag in output


def run_worker_with(monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str]) -> Settings:
    import app.main

    started: list[Settings] = []
    monkeypatch.setattr(app.main, "run_worker", started.append)
    result = CliRunner().invoke(main, ["worker", *args], env=env)
    assert result.exit_code == 0, result.output
    [settings] = started
    return settings


def test_worker_flags_override_the_settings_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env = {"LOG_LEVEL": "warn", "WEB_PORT": "6100", "DATA_DIR": str(tmp_path / "env")}
    settings = run_worker_with(monkeypatch, ["-l", "DEBUG", "--web-port", "7001", "--datadir", str(tmp_path)], env)
    assert (settings.log_level, settings.web_port, settings.data_dir) == ("debug", 7001, str(tmp_path))
    unflagged = run_worker_with(monkeypatch, [], env)
    assert (unflagged.log_level, unflagged.web_port, unflagged.data_dir) == ("warn", 6100, str(tmp_path / "env"))
