"""docker-compose publishes only what users open in a browser, and only on the host's loopback."""

from __future__ import annotations

from tests.unit.test_monitoring_files import compose

USER_FACING = {"worker": "6066", "grafana": "3000", "prometheus": "9090"}


def test_only_the_dashboards_are_published_and_only_on_loopback() -> None:
    published = {name: svc.get("ports", []) for name, svc in compose()["services"].items() if svc.get("ports")}
    assert set(published) == set(USER_FACING), published
    for name, ports in published.items():
        assert ports == [f"127.0.0.1:{USER_FACING[name]}:{USER_FACING[name]}"], (name, ports)


def test_every_app_service_gets_the_api_token() -> None:
    env = compose()["x-app"]["environment"]
    assert env["API_TOKEN"].startswith("${API_TOKEN") and env["ORCHESTRATOR_TOKEN"] == env["API_TOKEN"]
