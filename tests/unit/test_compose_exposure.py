"""docker-compose publishes only what users open in a browser and the host listeners a processor
under development needs (Kafka's EXTERNAL listener, Redis), and only on the host's loopback."""

from __future__ import annotations

from tests.unit.test_monitoring_files import compose

USER_FACING = {"worker": "6066", "grafana": "3000", "prometheus": "9090", "jaeger": "16686"}
# Service -> (host port, container port) for processors running on the host.
HOST_LISTENERS = {"kafka": ("29092", "29092"), "redis": ("16379", "6379")}


def test_only_the_dashboards_are_published_and_only_on_loopback() -> None:
    published = {name: svc.get("ports", []) for name, svc in compose()["services"].items() if svc.get("ports")}
    assert set(published) == set(USER_FACING) | set(HOST_LISTENERS), published
    expected = {name: (port, port) for name, port in USER_FACING.items()} | HOST_LISTENERS
    for name, ports in published.items():
        host, container = expected[name]
        assert ports == [f"127.0.0.1:{host}:{container}"], (name, ports)


def test_every_app_service_gets_the_api_token() -> None:
    env = compose()["x-app"]["environment"]
    assert env["API_TOKEN"].startswith("${API_TOKEN") and env["ORCHESTRATOR_TOKEN"] == env["API_TOKEN"]
