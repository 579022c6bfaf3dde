"""Secrets stay out of repr, model_dump, check-config and error messages, and still reach clients."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import main
from core.settings import ConfigurationError, Settings, load_settings

SECRETS = {
    "api_token": "api-secret-0123456789",
    "admin_token": "admin-secret-0123456789",
    "orchestrator_token": "sdk-secret-0123456789",
    "redis_password": "redis-secret-pw",
}


def test_no_secret_in_repr_str_or_dumps() -> None:
    settings = Settings(**SECRETS)
    shown = [repr(settings), str(settings), str(settings.model_dump()), settings.model_dump_json()]
    for text in shown:
        for secret in SECRETS.values():
            assert secret not in text


def test_a_password_in_redis_url_moves_to_redis_password() -> None:
    settings = Settings(redis_url="redis://app:p%40ss-w0rd@redis.internal:6379/2")
    assert settings.redis_url == "redis://app@redis.internal:6379/2"
    assert settings.redis_password is not None and settings.redis_password.get_secret_value() == "p@ss-w0rd"
    assert "w0rd" not in repr(settings)
    # An explicit REDIS_PASSWORD wins over one in the URL.
    both = Settings(redis_url="redis://:in-url@h:6379/0", redis_password="explicit")
    assert both.redis_password is not None and both.redis_password.get_secret_value() == "explicit"


def test_children_get_the_secrets_they_need_apart_from_the_url() -> None:
    env = Settings(redis_url="redis://:pw-0123@h:6379/0", **{k: v for k, v in SECRETS.items() if k != "redis_password"})
    child = env.as_env({})
    assert child["REDIS_URL"] == "redis://h:6379/0" and child["REDIS_PASSWORD"] == "pw-0123"
    assert child["API_TOKEN"] == SECRETS["api_token"]


@pytest.mark.parametrize(
    "url",
    ["redsi://:hunter2-pw@h:6379/0", "redis:/:hunter2-pw@h:6379/0", "redis//u:hunter2-pw@h:6379", "hunter2-pw@h"],
)
def test_a_mistyped_redis_url_error_does_not_echo_its_password(url: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(redis_url=url)
    assert "REDIS_URL" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    with pytest.raises(ValueError) as raw:
        Settings(redis_url=url)
    assert "hunter2" not in str(raw.value)


def test_a_bad_secret_is_named_never_shown() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(api_token="short-secret")
    assert "API_TOKEN" in str(caught.value) and "short-secret" not in str(caught.value)


def test_check_config_redacts_every_secret() -> None:
    env = {name.upper(): value for name, value in SECRETS.items()}
    result = CliRunner().invoke(main, ["check-config"], env=env)
    assert result.exit_code == 0, result.output
    for secret in SECRETS.values():
        assert secret not in result.output
    assert "API_TOKEN=***" in result.output


def test_redis_clients_get_the_password_and_tls_files(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read until a connection is made")
    plain = Settings(redis_url="redis://:pw-plain@h:6379/0").redis.client()
    assert plain.connection_pool.connection_kwargs["password"] == "pw-plain"
    assert "ssl_ca_certs" not in plain.connection_pool.connection_kwargs
    tls = Settings(redis_url="rediss://h:6380/0", redis_password="pw-tls", redis_ssl_ca_certs=str(ca)).redis.client()
    assert tls.connection_pool.connection_kwargs["ssl_ca_certs"] == str(ca)
    assert tls.connection_pool.connection_kwargs["password"] == "pw-tls"
    with pytest.raises(ValueError, match="rediss://"):
        Settings(redis_url="redis://h:6379/0", redis_ssl_ca_certs=str(ca))
    with pytest.raises(ValueError, match="redis_ssl_ca_certs"):
        Settings(redis_url="rediss://h:6379/0", redis_ssl_ca_certs=str(ca) + ".missing")
