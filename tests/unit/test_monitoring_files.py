"""The deployment files hold together: no docker engine here, so they are checked by parsing.

* every metric and label Prometheus/Grafana queries exists in core/metrics.py, and every
  metric there has a Grafana panel;
* Prometheus scrapes each metrics-serving service on the port its environment sets;
* docker-compose runs `frame-orchestrator <subcommand>` commands the CLI accepts, sets only
  real Settings variables with valid values, and mounts files that exist.
"""

from __future__ import annotations

import json
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import core.metrics
import frame_buffer_sdk.metrics
from app.cli import main as cli
from core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
PROMETHEUS = ROOT / "monitoring" / "prometheus.yml"
DASHBOARD = ROOT / "monitoring" / "grafana" / "dashboards" / "frame-buffer.json"
DATASOURCES = ROOT / "monitoring" / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = ROOT / "monitoring" / "grafana" / "provisioning" / "dashboards" / "dashboards.yml"

_SUFFIXES = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"), "gauge": ("",)}
# Labels Prometheus adds itself (instance/job) or a histogram series carries (le).
_IMPLICIT_LABELS = {"le", "instance", "job"}
_METRIC_RE = re.compile(r"\bframe_buffer_[a-z0-9_]+")
_BY_RE = re.compile(r"\bby\s*\(([^)]*)\)")
_LEGEND_RE = re.compile(r"\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}")
# Which subcommand serves /metrics on which Settings port variable.
_METRICS_PORT_VAR = {
    "worker": "WEB_PORT",
    "bridge": "BRIDGE_METRICS_PORT",
    "processor": "PROCESSOR_METRICS_PORT",
    "relay": "RELAY_METRICS_PORT",
}


def metrics_port_var(argv: list[str]) -> str | None:
    """The Settings port variable of what ``argv`` (frame-orchestrator ...) serves /metrics on;
    the synthetic capture serves none, a capture of real cameras does."""
    if argv[1] == "capture":
        return "CAPTURE_METRICS_PORT" if {"--source", "--sources-file"} & set(argv) else None
    return _METRICS_PORT_VAR.get(argv[1])


@cache
def declared() -> dict[str, tuple[str, frozenset[str]]]:
    """Series name -> (metric family, label names) for every metric of core/metrics.py and the SDK's."""
    series: dict[str, tuple[str, frozenset[str]]] = {}
    for value in [*vars(core.metrics).values(), *vars(frame_buffer_sdk.metrics).values()]:
        if not isinstance(value, MetricWrapperBase):
            continue
        labels = frozenset(value._labelnames)
        for family in value.describe():
            for suffix in _SUFFIXES[family.type]:
                series[family.name + suffix] = (family.name, labels)
    return series


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


@cache
def compose() -> dict[str, Any]:
    data: dict[str, Any] = _yaml(COMPOSE)
    return data


def _words(value: Any) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value or []]


def image_entrypoint() -> list[str]:
    """The app image's ENTRYPOINT (exec form): compose's `command:` is appended to it."""
    lines = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("ENTRYPOINT ")]
    return [str(word) for word in json.loads(lines[-1].removeprefix("ENTRYPOINT "))] if lines else []


def app_image() -> str | None:
    """The image compose builds from the Dockerfile (by one service; the others name it)."""
    built = {svc.get("image") for svc in compose()["services"].values() if svc.get("build") is not None}
    return built.pop() if len(built) == 1 else None


def _argv(service: dict[str, Any]) -> list[str]:
    """What the container runs: its entrypoint (the service's, or the app image's) and command."""
    if "entrypoint" in service:
        entry = _words(service["entrypoint"])
    elif service.get("image") is not None and service.get("image") == app_image():
        entry = image_entrypoint()
    else:
        entry = []
    return entry + _words(service.get("command"))


def app_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose()["services"].items() if _argv(svc)[:1] == ["frame-orchestrator"]}


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def dashboard_targets() -> list[tuple[str, dict[str, Any]]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t) for p in panels for t in p.get("targets", [])]


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_module_declares_what_the_checks_rely_on() -> None:
    names = declared()
    assert "frame_buffer_frames_routed_total" in names and "frame_buffer_routing_latency_seconds_bucket" in names
    assert "frame_buffer_queue_depth_frames" in names and "frame_buffer_frames_routed" not in names


def test_every_queried_metric_and_label_exists() -> None:
    names = declared()
    exprs = [(title, target["expr"]) for title, target in dashboard_targets()]
    assert exprs
    for title, expr in exprs:
        used = _METRIC_RE.findall(expr)
        assert used, f"panel {title!r} queries no frame_buffer metric: {expr}"
        unknown = [m for m in used if m not in names]
        assert not unknown, f"panel {title!r} uses {unknown}, not in core/metrics.py or frame_buffer_sdk/metrics.py"
        allowed = _IMPLICIT_LABELS.union(*(names[m][1] for m in used))
        for group in _BY_RE.findall(expr):
            labels = {label.strip() for label in group.split(",") if label.strip()}
            assert labels <= allowed, f"panel {title!r} groups by unknown labels {labels - allowed}"


@pytest.mark.parametrize("path", [PROMETHEUS, DASHBOARD], ids=lambda p: p.name)
def test_no_file_names_an_undeclared_metric(path: Path) -> None:
    mentioned = set(_METRIC_RE.findall(path.read_text()))
    assert mentioned - set(declared()) == set()


def test_every_metric_has_a_grafana_panel() -> None:
    queried = {declared()[m][0] for _, target in dashboard_targets() for m in _METRIC_RE.findall(target["expr"])}
    families = {family for family, _ in declared().values()}
    assert families - queried == set(), "metrics without a panel"


def test_legends_only_name_labels_the_query_keeps() -> None:
    for title, target in dashboard_targets():
        kept = {label.strip() for group in _BY_RE.findall(target["expr"]) for label in group.split(",")}
        for label in _LEGEND_RE.findall(target.get("legendFormat", "")):
            assert label in kept, f"panel {title!r}: legend names {label!r} but the query drops it"


def test_dashboard_picks_its_datasource_from_a_template_variable() -> None:
    board = json.loads(DASHBOARD.read_text())
    provisioned = _yaml(DATASOURCES)["datasources"]
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] in {ds["type"] for ds in provisioned}
    assert variable["current"]["value"] in {ds["uid"] for ds in provisioned}, "defaults to the provisioned one"
    chosen = {"type": variable["query"], "uid": f"${{{variable['name']}}}"}
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in board["panels"]:
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["datasource"] == chosen, panel["title"]
            assert all(t["datasource"] == chosen for t in panel["targets"]), panel["title"]


_FRAME_RATE_RE = re.compile(r"\brate\(frame_buffer_[a-z_]*(frames|dead_lettered)[a-z_]*_total\b")


def test_panels_of_frame_rates_are_in_frames_per_second() -> None:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    rated = [p for p in panels if p.get("targets") and all(_FRAME_RATE_RE.search(t["expr"]) for t in p["targets"])]
    assert len(rated) >= 8
    for panel in rated:
        assert panel["fieldConfig"]["defaults"]["unit"] == "suffix: frames/s", panel["title"]


# --- prometheus ------------------------------------------------------------------------------------


def test_prometheus_scrapes_every_metrics_port_of_the_stack() -> None:
    targets = {
        target
        for job in _yaml(PROMETHEUS)["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
        if job.get("metrics_path", "/metrics") == "/metrics"
    }
    services = compose()["services"]
    expected = set()
    for name, svc in app_services().items():
        var = metrics_port_var(_argv(svc))
        if var:
            port = _env(svc).get(var) or str(Settings.model_fields[var.lower()].default)
            assert port != "0", f"{name} serves no /metrics ({var}=0)"
            expected.add(f"{name}:{port}")
    assert expected, "the stack has metrics-serving services"
    assert expected == targets, f"missing {expected - targets}, stale {targets - expected}"
    assert all(t.split(":")[0] in services for t in targets)


# --- docker-compose -----------------------------------------------------------------------------------


def test_compose_runs_real_cli_commands() -> None:
    subcommands = {_argv(svc)[1] for svc in app_services().values()}
    assert {"worker", "bridge", "capture", "processor", "relay"} <= subcommands
    for name, svc in app_services().items():
        argv = _argv(svc)
        assert isinstance(cli, click.Group)
        command = cli.get_command(click.Context(cli), argv[1])
        assert command is not None, f"{name}: no subcommand {argv[1]!r}"
        # Parsing (not running) validates every option and choice, as the CLI would at start.
        with command.make_context(argv[1], argv[2:], parent=click.Context(cli)):
            pass


def test_compose_sets_only_valid_settings() -> None:
    fields = set(Settings.model_fields)
    for name, svc in app_services().items():
        env = _env(svc)
        unknown = {k for k in env if k.lower() not in fields}
        assert not unknown, f"{name}: {unknown} are not Settings variables"
        # model_validate, unlike Settings(), ignores this machine's environment: only compose's values count.
        Settings.model_validate({k.lower(): v for k, v in env.items()})


def test_two_workers_with_distinct_ports_and_stores() -> None:
    workers = {n: _env(s) for n, s in app_services().items() if _argv(s)[1] == "worker"}
    assert len(workers) >= 2
    assert len({env["WEB_PORT"] for env in workers.values()}) == len(workers)
    assert len({env.get("WEB_ADVERTISED_HOST") for env in workers.values()}) == len(workers)
    volumes = [tuple(compose()["services"][n].get("volumes", [])) for n in workers]
    assert len(set(volumes)) == len(workers), "each worker has its own RocksDB volume"


def test_compose_references_exist() -> None:
    services = compose()["services"]
    declared_volumes = set(compose().get("volumes") or {})
    assert {"kafka", "redis", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"], "KRaft, no ZooKeeper"
    assert services["redis"]["image"].startswith("redis:7")
    for name, svc in services.items():
        build = svc.get("build")
        if build is not None:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            assert (context / dockerfile).is_file(), f"{name}: no {dockerfile}"
        for dep in svc.get("depends_on") or []:
            assert dep in services, f"{name} depends on unknown {dep}"
        for volume in svc.get("volumes") or []:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in declared_volumes, f"{name}: volume {source} not declared"
    grafana_mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"])
    provider_path = _yaml(PROVIDERS)["providers"][0]["options"]["path"]
    assert grafana_mounts["./monitoring/grafana/dashboards"] == provider_path
    assert grafana_mounts["./monitoring/grafana/provisioning"] == "/etc/grafana/provisioning"


def test_dockerfile_copies_files_that_exist() -> None:
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    assert lines and any(line.startswith("FROM python:3.11-slim") for line in lines)
    # Sources of COPY from the build context (not --from=<stage>), flags left out.
    copies = [
        [word for word in shlex.split(line)[1:-1] if not word.startswith("--")]
        for line in lines
        if line.startswith("COPY ") and "--from=" not in line
    ]
    assert copies
    for sources in copies:
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
    assert any("pip install" in line for line in lines)
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not {source.rstrip("/") for sources in copies for source in sources} & ignored
