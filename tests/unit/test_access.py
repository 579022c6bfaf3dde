"""Who may call the REST API: the pure decision behind the web middleware."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from app.access import AccessPolicy, Refusal, RequestFacts, Role, admin_refusal, judge, presented_token

API = "api-token-0123456789abcdef"
ADMIN = "admin-token-0123456789abcdef"
OWN = "http://worker:6066"
GUARDED = AccessPolicy(api_token=SecretStr(API), admin_token=SecretStr(ADMIN))
OPEN = AccessPolicy()


def write(token: str | None = None, remote: str = "10.0.0.7", **facts: str) -> RequestFacts:
    values: dict[str, str | None] = {
        "method": "POST",
        "path": "/api/v1/processors/heartbeat",
        "authorization": f"Bearer {token}" if token else None,
        "content_type": "application/json",
        "own_origin": OWN,
        "remote": remote,
        "host": "127.0.0.1:6066" if remote in ("127.0.0.1", "::1") else "worker:6066",
    }
    values.update(facts)
    return RequestFacts(**values)  # type: ignore[arg-type]


def refusal(verdict: Role | Refusal) -> tuple[int, str]:
    assert isinstance(verdict, Refusal), verdict
    return verdict.status, verdict.detail


def test_tokens_prove_roles_and_wrong_or_missing_ones_are_refused() -> None:
    assert judge(GUARDED, write(API)) is Role.API
    assert judge(GUARDED, write(ADMIN)) is Role.ADMIN
    assert refusal(judge(GUARDED, write("not-it")))[0] == 403
    status, detail = refusal(judge(GUARDED, write()))
    assert status == 401 and "API_TOKEN" in detail
    # Loopback is no excuse once a token is set.
    assert refusal(judge(GUARDED, write(remote="127.0.0.1")))[0] == 401


def test_without_api_token_only_loopback_clients_write() -> None:
    assert judge(OPEN, write(remote="127.0.0.1")) is Role.API
    assert judge(OPEN, write(remote="::1")) is Role.API
    for remote in ("10.0.0.7", "192.168.1.2", "", "not-an-ip"):
        status, detail = refusal(judge(OPEN, write(remote=remote)))
        assert status == 401 and "API_TOKEN" in detail, remote


def test_loopback_writes_need_a_loopback_host_against_dns_rebinding() -> None:
    for host in ("localhost:6066", "LOCALHOST", "127.0.0.1", "[::1]:6066", "127.0.0.2:1"):
        assert judge(OPEN, write(remote="127.0.0.1", host=host)) is Role.API, host
    # What the worker sees then: same origin as its Host header, from 127.0.0.1.
    evil = "http://evil.example:6066"
    rebound = write(remote="127.0.0.1", host="evil.example:6066", origin=evil, own_origin=evil)
    status, detail = refusal(judge(OPEN, rebound))
    assert status == 401 and "API_TOKEN" in detail


def test_reads_are_open_unless_read_auth_and_health_metrics_stay_open() -> None:
    read = write(method="GET", path="/api/v1/processors/", content_type="")
    assert judge(GUARDED, read) is Role.NONE
    strict = AccessPolicy(api_token=SecretStr(API), read_auth=True)
    assert refusal(judge(strict, read))[0] == 401
    assert judge(strict, write(API, method="GET", path="/api/v1/processors/", content_type="")) is Role.API
    for path in ("/health", "/metrics", "/"):
        assert judge(strict, write(method="GET", path=path, content_type="")) is Role.NONE
    # Faust's own table views are reads like any other.
    assert refusal(judge(strict, write(method="GET", path="/table/processors/", content_type="")))[0] == 401


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", ""])
def test_write_bodies_must_be_json(content_type: str) -> None:
    status, detail = refusal(judge(GUARDED, write(API, content_type=content_type)))
    assert status == 415 and "application/json" in detail
    # DELETE carries no body.
    assert judge(GUARDED, write(API, method="DELETE", content_type="")) is Role.API


def test_foreign_origins_are_refused_own_and_listed_ones_pass() -> None:
    status, detail = refusal(judge(GUARDED, write(API, origin="https://evil.example")))
    assert status == 403 and "evil.example" in detail
    assert refusal(judge(GUARDED, write(API, origin="null")))[0] == 403
    assert refusal(judge(GUARDED, write(API, fetch_site="cross-site")))[0] == 403
    assert judge(GUARDED, write(API, origin=OWN)) is Role.API
    listed = AccessPolicy(api_token=SecretStr(API), allowed_origins=frozenset({"https://ops.example"}))
    assert judge(listed, write(API, origin="https://ops.example")) is Role.API
    # Loopback without a token is where a cross-site page could reach: the origin check holds there too.
    assert refusal(judge(OPEN, write(remote="127.0.0.1", origin="https://evil.example")))[0] == 403


def test_admin_token_guards_changes_except_a_draining_processor_leaving() -> None:
    assert admin_refusal(OPEN, Role.API) is None
    assert admin_refusal(GUARDED, Role.ADMIN) is None
    denied = admin_refusal(GUARDED, Role.API)
    assert denied is not None and denied.status == 403 and "ADMIN_TOKEN" in denied.detail
    assert admin_refusal(GUARDED, Role.API, own_move=True) is None
    assert admin_refusal(GUARDED, Role.NONE, own_move=True) is not None


def test_token_parsing_bearer_or_basic_password() -> None:
    assert presented_token("Bearer abc") == "abc"
    assert presented_token("bearer  abc ") == "abc"
    assert presented_token("Bearer ") is None
    assert presented_token(None) is None
    assert presented_token("Basic " + base64.b64encode(b"processor:abc:def").decode()) == "abc:def"
    assert presented_token("Basic " + base64.b64encode(b"processor:").decode()) is None
    assert presented_token("Basic not-base64!") is None
    assert presented_token("Digest abc") is None


def test_a_basic_password_is_a_token_like_bearer() -> None:
    basic = "Basic " + base64.b64encode(f"detektr:{API}".encode()).decode()
    assert judge(GUARDED, write(authorization=basic)) is Role.API


def test_registering_again_unchanged_is_a_restart_not_a_change() -> None:
    from app.web import same_spec
    from frame_buffer_sdk.models import ProcessorSpec

    stored = {"id": "p1", "capabilities": ["a", "b"], "capacity": 5, "stateful": False, "partitions": 3, "metadata": {}}
    assert same_spec(ProcessorSpec(id="p1", capabilities=["b", "a"], capacity=5), stored)
    assert same_spec(ProcessorSpec(id="p1", capabilities=["a", "b"], capacity=5, partitions=3), stored)
    assert not same_spec(ProcessorSpec(id="p1", capabilities=["a", "b"], capacity=6), stored)
    assert not same_spec(ProcessorSpec(id="p1", capabilities=["a", "b"], capacity=5, partitions=4), stored)
    assert not same_spec(ProcessorSpec(id="p1", capabilities=["a", "b"], capacity=5, metadata={"gpu": 1}), stored)
