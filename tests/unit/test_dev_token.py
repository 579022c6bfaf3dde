"""make dev gives each run its own API token, shared by its workers and processors."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from core.settings import Settings
from devtools.dev import dev_settings


def test_each_dev_run_makes_a_token_its_processors_send(tmp_path: Path) -> None:
    first = dev_settings(Settings(), "kafka://127.0.0.1:1", "redis://127.0.0.1:2/0", tmp_path)
    second = dev_settings(Settings(), "kafka://127.0.0.1:1", "redis://127.0.0.1:2/0", tmp_path)
    assert first.api_token is not None and first.orchestrator_token is not None
    assert first.api_token.get_secret_value() == first.orchestrator_token.get_secret_value()
    assert second.api_token is not None and second.api_token.get_secret_value() != first.api_token.get_secret_value()
    env = first.as_env({})
    assert env["API_TOKEN"] == env["ORCHESTRATOR_TOKEN"] == first.api_token.get_secret_value()


def test_a_token_the_user_set_is_kept(tmp_path: Path) -> None:
    mine = "my-own-token-0123456789"
    base = Settings(api_token=SecretStr(mine), orchestrator_token=SecretStr(mine))
    child = dev_settings(base, "kafka://127.0.0.1:1", "redis://127.0.0.1:2/0", tmp_path)
    assert child.api_token is not None and child.api_token.get_secret_value() == mine
