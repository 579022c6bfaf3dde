"""Deployment files that run, checked without a Docker engine or a cluster (issue 12, section 4).

* docker-compose: one image built once, Kafka's log kept beside the workers' RocksDB, a host
  listener for processors on the host, traces through an OTel Collector to Jaeger, drains that
  end before Docker's SIGKILL;
* monitoring/alerts.yml: Prometheus rule groups over metrics core/metrics.py declares;
* Dockerfile: stages, the dependency layer before the code, the entrypoint, a non-root user;
* constraints.txt: pins every requirement of pyproject.toml, inside its range;
* deploy/k8s: parse and pass a structural schema per kind, and agree with each other and with
  Settings (env names, the processor's consumer group and topic in the KEDA trigger).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import core.metrics
from app.cli import main as cli
from core.settings import Settings
from tests.unit.test_monitoring_files import (
    _IMPLICIT_LABELS,
    _METRIC_RE,
    PROMETHEUS,
    ROOT,
    _argv,
    _env,
    app_image,
    app_services,
    compose,
    declared,
    image_entrypoint,
    metrics_port_var,
)

DOCKERFILE = ROOT / "Dockerfile"
CONSTRAINTS = ROOT / "constraints.txt"
PYPROJECT = ROOT / "pyproject.toml"
ALERTS = ROOT / "monitoring" / "alerts.yml"
COLLECTOR = ROOT / "monitoring" / "otel-collector.yaml"
REQUIREMENTS_SCRIPT = ROOT / "deploy" / "docker" / "pyproject_requirements.py"
K8S = ROOT / "deploy" / "k8s"
TRACING_SUBCOMMANDS = {"worker", "bridge", "processor"}


def _yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def seconds(duration: str | int | float) -> float:
    """A compose/Prometheus duration (`30s`, `1m30s`, `2m`, `500ms`) in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a duration: {duration!r}")
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def effective(env: dict[str, str], name: str) -> str:
    """The value a service runs with: its environment's, else the Settings default."""
    return env.get(name) or str(Settings.model_fields[name.lower()].default)


def test_duration_parser() -> None:
    assert seconds("30s") == 30 and seconds("1m30s") == 90 and seconds("500ms") == 0.5
    with pytest.raises(ValueError):
        seconds("30")


# --- docker-compose -----------------------------------------------------------------------------


def test_one_image_is_built_once_and_run_by_every_app_service() -> None:
    services = compose()["services"]
    builders = [name for name, svc in services.items() if svc.get("build") is not None]
    assert len(builders) == 1, f"exactly one service builds the image, not {builders}"
    image = app_image()
    assert image and services[builders[0]]["image"] == image
    apps = app_services()
    assert len(apps) >= 6 and builders[0] in apps
    for name, svc in apps.items():
        assert svc["image"] == image, f"{name} runs {svc.get('image')}, not the built {image}"
        if name != builders[0]:
            assert svc.get("pull_policy") == "never", f"{name} would try to pull {image} from a registry"


def test_app_commands_follow_the_image_entrypoint() -> None:
    assert image_entrypoint() == ["frame-orchestrator"]
    for name, svc in app_services().items():
        assert "entrypoint" not in svc, f"{name} overrides the image's entrypoint"
        assert svc["command"][0] != "frame-orchestrator", f"{name}: the entrypoint already is frame-orchestrator"


def test_services_stop_after_their_drain_not_before() -> None:
    for name, svc in app_services().items():
        drain = float(effective(_env(svc), "SHUTDOWN_GRACE_SECONDS"))
        grace = svc.get("stop_grace_period")
        assert grace is not None, f"{name} has Docker's 10 s default stop_grace_period"
        assert seconds(grace) > drain, f"{name}: stop_grace_period {grace} <= SHUTDOWN_GRACE_SECONDS {drain}"


def _named_volume(service: dict[str, Any], target: str) -> str | None:
    for volume in service.get("volumes") or []:
        source, _, rest = volume.partition(":")
        if rest.split(":")[0] == target and not source.startswith((".", "/")):
            return source
    return None


def test_kafka_log_and_worker_stores_live_and_die_together() -> None:
    services = compose()["services"]
    declared_volumes = set(compose().get("volumes") or {})
    workers = {n: s for n, s in app_services().items() if _argv(s)[1] == "worker"}
    stores = {n: _named_volume(s, _env(s)["DATA_DIR"]) for n, s in workers.items()}
    kafka = services["kafka"]
    log_dir = kafka["environment"].get("KAFKA_LOG_DIRS")
    kafka_volume = _named_volume(kafka, log_dir) if log_dir else None
    persistent_stores = {n for n, v in stores.items() if v}
    # Either both persist (named volumes) or neither does; a kept RocksDB over a lost log breaks recovery.
    assert bool(persistent_stores) == bool(kafka_volume), (stores, kafka_volume)
    if kafka_volume:
        assert persistent_stores == set(workers), f"every worker keeps its store: {stores}"
        assert {kafka_volume, *stores.values()} <= declared_volumes
        assert kafka["environment"].get("CLUSTER_ID"), "a kept log needs a fixed CLUSTER_ID"


def _listeners(value: str) -> dict[str, str]:
    return {item.split("://")[0]: item.split("://")[1] for item in value.split(",")}


def test_kafka_has_a_host_listener_a_host_processor_can_reach() -> None:
    kafka = compose()["services"]["kafka"]
    env = kafka["environment"]
    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocols), "every listener has a security protocol"
    assert set(advertised) <= set(listeners)
    published = {p.split(":")[-1]: p.split(":")[-2] for p in kafka.get("ports", [])}  # container -> host port
    host = [name for name, address in advertised.items() if address.split(":")[0] in {"localhost", "127.0.0.1"}]
    assert len(host) == 1, f"one listener advertised on the host's loopback: {advertised}"
    container_port = listeners[host[0]].rsplit(":", 1)[1]
    assert published.get(container_port) == advertised[host[0]].rsplit(":", 1)[1], (published, advertised)
    # The compose network's clients use the in-network listener KAFKA_BROKER names.
    broker = effective(_env(next(iter(app_services().values()))), "KAFKA_BROKER").removeprefix("kafka://")
    assert broker in {a for n, a in advertised.items() if n not in host}
    # A host processor also reads pixels from Redis.
    assert compose()["services"]["redis"].get("ports"), "Redis is published for host processors"


def test_traces_go_through_the_collector_to_jaeger() -> None:
    services = compose()["services"]
    collector = _yaml(COLLECTOR)
    http = collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"]
    for name, svc in app_services().items():
        if _argv(svc)[1] not in TRACING_SUBCOMMANDS:
            continue
        env = _env(svc)
        endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        assert endpoint, f"{name} exports no traces"
        host_port = endpoint.split("://", 1)[1].rstrip("/")
        host, port = host_port.split(":")
        assert host in services and "opentelemetry-collector" in services[host]["image"], f"{name} exports to {host}"
        assert http.endswith(f":{port}"), f"{name} sends to port {port}; the collector listens on {http}"
        assert env.get("OTEL_SERVICE_NAME"), f"{name} has no service name of its own"
    mounts = dict(v.split(":")[:2] for v in services["otel-collector"]["volumes"])
    config_arg = next(a for a in services["otel-collector"]["command"] if a.startswith("--config="))
    assert mounts["./monitoring/otel-collector.yaml"] == config_arg.removeprefix("--config=")
    for pipeline in collector["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline.get(kind, [])) <= set(collector.get(kind) or {}), f"undefined {kind}"
    exporters = [collector["exporters"][e] for e in collector["service"]["pipelines"]["traces"]["exporters"]]
    targets = {exporter["endpoint"].split("://")[-1].split(":")[0] for exporter in exporters}
    assert "jaeger" in targets and "jaeger" in services
    assert "127.0.0.1:16686:16686" in services["jaeger"]["ports"], "Jaeger's UI is on the host's loopback"


# --- alert rules ------------------------------------------------------------------------------------

_RULE_KEYS = {"alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
_TEMPLATE_LABEL_RE = re.compile(r"\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)")
_BY_RE = re.compile(r"\b(?:by|on)\s*\(([^)]*)\)")


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in _yaml(ALERTS)["groups"] for rule in group["rules"]]


def test_alerts_parse_as_prometheus_rule_groups() -> None:
    doc = _yaml(ALERTS)
    assert set(doc) == {"groups"}
    names = [group["name"] for group in doc["groups"]]
    assert names and len(names) == len(set(names)), "group names are unique"
    alerts = [rule["alert"] for rule in alert_rules()]
    assert len(alerts) == len(set(alerts)), "alert names are unique"
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules", "limit"} and group["rules"], group["name"]
        for rule in group["rules"]:
            assert set(rule) <= _RULE_KEYS, f"{rule.get('alert')}: unknown keys {set(rule) - _RULE_KEYS}"
            assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", rule["alert"]), rule["alert"]
            expr = rule["expr"]
            assert isinstance(expr, str) and expr.strip()
            assert expr.count("(") == expr.count(")"), f"{rule['alert']}: unbalanced parentheses"
            if "for" in rule:
                seconds(rule["for"])
            assert rule["labels"]["severity"] in {"warning", "critical"}
            assert rule["annotations"]["summary"]


def test_alerts_use_only_declared_metrics_and_labels() -> None:
    names = declared()
    for rule in alert_rules():
        used = _METRIC_RE.findall(rule["expr"])
        assert used, f"{rule['alert']} queries no frame_buffer metric"
        unknown = [m for m in used if m not in names]
        assert not unknown, f"{rule['alert']} uses {unknown}, not in core/metrics.py"
        allowed = _IMPLICIT_LABELS.union(*(names[m][1] for m in used))
        grouped = {label.strip() for g in _BY_RE.findall(rule["expr"]) for label in g.split(",") if label.strip()}
        assert grouped <= allowed, f"{rule['alert']} groups by unknown labels {grouped - allowed}"
        templated = {
            label
            for text in (*rule["annotations"].values(), *rule["labels"].values())
            for label in _TEMPLATE_LABEL_RE.findall(text)
        }
        assert templated <= allowed, f"{rule['alert']} templates unknown labels {templated - allowed}"


def _alerts_on(metric: str) -> list[dict[str, Any]]:
    return [rule for rule in alert_rules() if metric in _METRIC_RE.findall(rule["expr"])]


def test_alerts_cover_what_operators_page_on() -> None:
    for metric in (
        "frame_buffer_backpressure_level",
        "frame_buffer_processor_healthy",
        "frame_buffer_dead_lettered_total",
        "frame_buffer_stream_backlog_entries",
    ):
        assert _alerts_on(metric), f"no alert on {metric}"
    stale = [r for r in alert_rules() if "Stale" in r["alert"] or "NoLagSample" in r["alert"]]
    assert stale, "an alert on stale lag samples"
    lag_metrics = {"frame_buffer_queue_depth_frames", "frame_buffer_router_lag_frames"}
    assert all(set(_METRIC_RE.findall(r["expr"])) & lag_metrics for r in stale)
    assert any("changes(" in r["expr"] or "absent(" in r["expr"] for r in stale)


def test_critical_backpressure_alert_uses_the_critical_level() -> None:
    # The gauge's help text is the level table: "0 NORMAL, 1 ELEVATED, 2 HIGH, 3 CRITICAL".
    help_text = core.metrics.BACKPRESSURE_LEVEL._documentation
    critical = int(re.search(r"(\d+) CRITICAL", help_text).group(1))  # type: ignore[union-attr]
    (rule,) = [r for r in _alerts_on("frame_buffer_backpressure_level") if "Critical" in r["alert"]]
    match = re.search(r"\)\s*(>=|==|>)\s*(\d+)\s*$", rule["expr"].strip())
    assert match, rule["expr"]
    op, value = match.group(1), int(match.group(2))
    assert (op in {">=", "=="} and value == critical) or (op == ">" and value == critical - 1), rule["expr"]


def test_prometheus_loads_the_rules_compose_mounts() -> None:
    rule_files = _yaml(PROMETHEUS).get("rule_files") or []
    mounts = dict(v.split(":")[:2] for v in compose()["services"]["prometheus"]["volumes"])
    assert mounts.get("./monitoring/alerts.yml") in rule_files


# --- Dockerfile -----------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line.removesuffix(chr(92)).strip()}".strip()
        if not line.endswith("\\"):
            word, _, rest = pending.partition(" ")
            out.append((word.upper(), rest))
            pending = ""
    return out


def stages() -> list[tuple[str, list[tuple[str, str]]]]:
    found: list[tuple[str, list[tuple[str, str]]]] = []
    for word, rest in dockerfile_instructions():
        if word == "FROM":
            parts = rest.split()
            assert len(parts) == 3 and parts[1].upper() == "AS", f"every stage is named: FROM {rest}"
            found.append((parts[2], []))
        else:
            assert found, "instructions before FROM"
            found[-1][1].append((word, rest))
    return found


def code_dirs() -> set[str]:
    include = tomllib.loads(PYPROJECT.read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    return {pattern.rstrip("*") for pattern in include}


def test_dockerfile_is_multi_stage_and_runtime_holds_only_the_venv() -> None:
    found = stages()
    assert len(found) >= 2
    build_names = {name for name, _ in found[:-1]}
    runtime = found[-1][1]
    from_stage = [rest for word, rest in runtime if word == "COPY" and "--from=" in rest]
    assert from_stage and all(re.search(r"--from=(\S+)", r).group(1) in build_names for r in from_stage)  # type: ignore[union-attr]
    plain_copies = [rest for word, rest in runtime if word == "COPY" and "--from=" not in rest]
    assert not plain_copies, f"the runtime stage copies sources from the context: {plain_copies}"
    assert not any(word == "RUN" and "pip install" in rest for word, rest in runtime)


def test_dockerfile_ends_with_the_cli_entrypoint_as_a_non_root_user() -> None:
    runtime = stages()[-1][1]
    entrypoints = [json.loads(rest) for word, rest in runtime if word == "ENTRYPOINT"]
    scripts = tomllib.loads(PYPROJECT.read_text())["project"]["scripts"]
    assert entrypoints and entrypoints[-1] == ["frame-orchestrator"] and "frame-orchestrator" in scripts
    assert [word for word, _ in runtime if word in {"ENTRYPOINT", "CMD"}][-2:] == ["ENTRYPOINT", "CMD"]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1] not in {"root", "0"}
    assert any(word == "ENV" and "DATA_DIR=/data" in rest for word, rest in runtime)
    assert any(word == "RUN" and "mkdir -p /data" in rest and "chown" in rest for word, rest in runtime)


def test_dependencies_are_installed_before_the_code_is_copied() -> None:
    build = stages()[0][1]
    copied: list[str] = []
    deps_at = code_at = None
    for index, (word, rest) in enumerate(build):
        if word == "COPY":
            sources = [s for s in shlex.split(rest)[:-1] if not s.startswith("--")]
            copied.extend(sources)
            if code_at is None and set(sources) & code_dirs():
                code_at = index
        if word == "RUN" and "pip install" in rest and deps_at is None:
            deps_at = index
            assert "--constraint constraints.txt" in rest or "-c constraints.txt" in rest, rest
            assert "pyproject_requirements.py" in rest
    assert deps_at is not None and code_at is not None and deps_at < code_at
    assert code_dirs() <= set(copied), f"the image lacks packages: {code_dirs() - set(copied)}"
    final = [rest for word, rest in build if word == "RUN" and "pip install" in rest][-1]
    assert "--no-deps" in final, "the code layer installs no dependency of its own"


def test_requirements_script_reads_pyprojects_and_skips_local_distributions(tmp_path: Path) -> None:
    (tmp_path / "sdk").mkdir()
    (tmp_path / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=68"]\n'
        '[project]\nname = "frame-buffer-v2"\n'
        'dependencies = ["faust-streaming==0.15.3", "frame_buffer_sdk", "x @ https://example.invalid/x.whl"]\n'
    )
    (tmp_path / "sdk" / "pyproject.toml").write_text(
        '[project]\nname = "frame-buffer-sdk"\ndependencies = ["aiokafka>=0.10", "redis>=5"]\n'
    )
    out = subprocess.run(
        [sys.executable, str(REQUIREMENTS_SCRIPT), "pyproject.toml", "sdk/pyproject.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["setuptools>=68", "faust-streaming==0.15.3", "aiokafka>=0.10", "redis>=5"]


def test_requirements_script_on_the_real_pyproject() -> None:
    out = subprocess.run(
        [sys.executable, str(REQUIREMENTS_SCRIPT), str(PYPROJECT)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    project = tomllib.loads(PYPROJECT.read_text())
    assert out == project["build-system"]["requires"] + project["project"]["dependencies"]


# --- constraints ----------------------------------------------------------------------------------------


@cache
def pins() -> dict[str, Version]:
    found: dict[str, Version] = {}
    for line in CONSTRAINTS.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", line.strip())
        assert match, f"constraints.txt: not name==version: {line!r}"
        name = canonicalize_name(match.group(1))
        assert name not in found, f"constraints.txt pins {name} twice"
        found[name] = Version(match.group(2))
    return found


def pyproject_requirements() -> Iterator[Requirement]:
    """The requirements of the orchestrator and of the SDK, minus the two distributions themselves."""
    projects = [
        tomllib.loads(path.read_text())["project"] for path in (PYPROJECT, PYPROJECT.parent / "sdk" / "pyproject.toml")
    ]
    local = {canonicalize_name(project["name"]) for project in projects}
    for project in projects:
        extras = project.get("optional-dependencies", {}).values()
        for text in [*project["dependencies"], *(r for extra in extras for r in extra)]:
            requirement = Requirement(text)
            if canonicalize_name(requirement.name) not in local:
                yield requirement


def test_constraints_pin_every_requirement_within_its_range() -> None:
    assert canonicalize_name("frame-buffer-v2") not in pins(), "the project itself is not a constraint"
    checked = 0
    for requirement in pyproject_requirements():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        name = canonicalize_name(requirement.name)
        assert name in pins(), f"constraints.txt does not pin {name}: regenerate it (see its header)"
        assert requirement.specifier.contains(pins()[name], prereleases=True), (
            f"constraints.txt pins {name}=={pins()[name]}, outside pyproject's {requirement.specifier}"
        )
        checked += 1
    assert checked >= 20


# --- Kubernetes -------------------------------------------------------------------------------------------
# A kubeconform-style structural check: a small JSON-schema subset (type, required, properties,
# items, const, enum, minItems, minimum) and one schema per kind the example uses.

_META = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
_CONTAINER = {
    "type": "object",
    "required": ["name", "image"],
    "properties": {
        "name": {"type": "string"},
        "image": {"type": "string"},
        "args": {"type": "array", "items": {"type": "string"}},
        "env": {
            "type": "array",
            "items": {"type": "object", "required": ["name"], "properties": {"value": {"type": "string"}}},
        },
        "ports": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["containerPort"],
                "properties": {"containerPort": {"type": "integer"}},
            },
        },
    },
}
_POD_TEMPLATE = {
    "type": "object",
    "required": ["metadata", "spec"],
    "properties": {
        "metadata": {"type": "object", "required": ["labels"], "properties": {"labels": {"type": "object"}}},
        "spec": {
            "type": "object",
            "required": ["containers"],
            "properties": {
                "containers": {"type": "array", "minItems": 1, "items": _CONTAINER},
                "terminationGracePeriodSeconds": {"type": "integer", "minimum": 1},
            },
        },
    },
}
_SELECTOR = {"type": "object", "required": ["matchLabels"], "properties": {"matchLabels": {"type": "object"}}}
_CLAIM = {
    "type": "object",
    "required": ["metadata", "spec"],
    "properties": {
        "metadata": _META,
        "spec": {
            "type": "object",
            "required": ["accessModes", "resources"],
            "properties": {
                "accessModes": {"type": "array", "minItems": 1},
                "resources": {
                    "type": "object",
                    "required": ["requests"],
                    "properties": {"requests": {"type": "object", "required": ["storage"]}},
                },
            },
        },
    },
}


def _kind(api_version: str, kind: str, spec: dict[str, Any] | None, **top: Any) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "apiVersion": {"const": api_version},
        "kind": {"const": kind},
        "metadata": _META,
        **top,
    }
    required = ["apiVersion", "kind", "metadata"]
    if spec is not None:
        properties["spec"] = spec
        required.append("spec")
    return {"type": "object", "required": required, "properties": properties}


SCHEMAS: dict[str, dict[str, Any]] = {
    "Namespace": _kind("v1", "Namespace", None),
    "ConfigMap": _kind("v1", "ConfigMap", None, data={"type": "object", "additionalProperties": {"type": "string"}}),
    "Secret": _kind("v1", "Secret", None, stringData={"type": "object", "additionalProperties": {"type": "string"}}),
    "Service": _kind(
        "v1",
        "Service",
        {
            "type": "object",
            "required": ["selector", "ports"],
            "properties": {
                "ports": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object", "required": ["port"], "properties": {"port": {"type": "integer"}}},
                }
            },
        },
    ),
    "Deployment": _kind(
        "apps/v1",
        "Deployment",
        {
            "type": "object",
            "required": ["selector", "template"],
            "properties": {
                "replicas": {"type": "integer", "minimum": 0},
                "selector": _SELECTOR,
                "template": _POD_TEMPLATE,
            },
        },
    ),
    "StatefulSet": _kind(
        "apps/v1",
        "StatefulSet",
        {
            "type": "object",
            "required": ["serviceName", "selector", "template", "volumeClaimTemplates"],
            "properties": {
                "serviceName": {"type": "string"},
                "replicas": {"type": "integer", "minimum": 0},
                "podManagementPolicy": {"enum": ["OrderedReady", "Parallel"]},
                "selector": _SELECTOR,
                "template": _POD_TEMPLATE,
                "volumeClaimTemplates": {"type": "array", "minItems": 1, "items": _CLAIM},
            },
        },
    ),
    "ScaledObject": _kind(
        "keda.sh/v1alpha1",
        "ScaledObject",
        {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "properties": {
                "scaleTargetRef": {"type": "object", "required": ["name"]},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 1},
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "properties": {"metadata": {"type": "object", "additionalProperties": {"type": "string"}}},
                    },
                },
            },
        },
    ),
}
_TYPES = {"object": dict, "array": list, "string": str, "integer": int}


def schema_errors(value: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    errors: list[str] = []
    expected = schema.get("type")
    if expected and (not isinstance(value, _TYPES[expected]) or (expected == "integer" and isinstance(value, bool))):
        return [f"{path or '/'}: expected {expected}, got {type(value).__name__}"]
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: expected {schema['const']!r}, got {value!r}")
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} not one of {schema['enum']}")
    if "minimum" in schema and value < schema["minimum"]:
        errors.append(f"{path}: {value} < {schema['minimum']}")
    if isinstance(value, dict):
        errors += [f"{path}/{key}: required" for key in schema.get("required", []) if key not in value]
        for key, item in value.items():
            sub = schema.get("properties", {}).get(key, schema.get("additionalProperties"))
            if isinstance(sub, dict):
                errors += schema_errors(item, sub, f"{path}/{key}")
    if isinstance(value, list):
        if len(value) < schema.get("minItems", 0):
            errors.append(f"{path}: fewer than {schema['minItems']} items")
        for index, item in enumerate(value):
            errors += schema_errors(item, schema.get("items", {}), f"{path}/{index}")
    return errors


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@cache
def manifests() -> tuple[dict[str, Any], ...]:
    docs = [doc for path in manifest_files() for doc in yaml.safe_load_all(path.read_text()) if doc is not None]
    return tuple(docs)


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for doc in manifests() if doc["kind"] == kind]


def workloads() -> list[dict[str, Any]]:
    return of_kind("Deployment") + of_kind("StatefulSet")


def containers() -> list[tuple[str, dict[str, Any]]]:
    return [(w["metadata"]["name"], c) for w in workloads() for c in w["spec"]["template"]["spec"]["containers"]]


def config_env() -> dict[str, str]:
    (config,) = of_kind("ConfigMap")
    return dict(config["data"])


def container_env(container: dict[str, Any]) -> dict[str, str]:
    """The Settings environment a container runs with: the ConfigMap, then its plain values."""
    env = config_env() if container.get("envFrom") else {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", "pod-0", item["value"])
    return env


def test_the_schema_check_rejects_broken_manifests() -> None:
    (deployment,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "processor-detector"]
    assert schema_errors(deployment, SCHEMAS["Deployment"]) == []
    broken = json.loads(json.dumps(deployment))
    del broken["spec"]["selector"]
    broken["apiVersion"] = "extensions/v1beta1"
    broken["spec"]["template"]["spec"]["containers"][0]["args"] = "processor detector"
    errors = schema_errors(broken, SCHEMAS["Deployment"])
    assert any("selector: required" in e for e in errors)
    assert any("apiVersion" in e for e in errors) and any("args" in e for e in errors)


def test_manifests_pass_the_schema_of_their_kind() -> None:
    kinds = {doc["kind"] for doc in manifests()}
    assert {"StatefulSet", "Deployment", "Service", "ScaledObject", "Secret", "ConfigMap"} <= kinds
    for doc in manifests():
        assert doc["kind"] in SCHEMAS, f"no schema for kind {doc['kind']}"
        errors = schema_errors(doc, SCHEMAS[doc["kind"]])
        assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: {errors}"
    keys = [(doc["kind"], doc["metadata"]["name"]) for doc in manifests()]
    assert len(keys) == len(set(keys)), "kind/name pairs are unique"


def test_kustomization_lists_every_manifest() -> None:
    kustomization = _yaml(K8S / "kustomization.yaml")
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == [p.name for p in manifest_files()]
    (namespace,) = of_kind("Namespace")
    assert kustomization["namespace"] == namespace["metadata"]["name"]
    assert {doc["metadata"].get("namespace") for doc in manifests() if doc["kind"] != "Namespace"} == {
        namespace["metadata"]["name"]
    }


def test_workloads_select_their_own_pods_and_services_select_workloads() -> None:
    labels = []
    for workload in workloads():
        pod_labels = workload["spec"]["template"]["metadata"]["labels"]
        assert workload["spec"]["selector"]["matchLabels"].items() <= pod_labels.items(), workload["metadata"]["name"]
        labels.append(pod_labels)
    for service in of_kind("Service"):
        selector = service["spec"]["selector"]
        targets = [w for w in workloads() if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        assert targets, f"Service {service['metadata']['name']} selects no pods"
        port_names = {
            p.get("name")
            for w in targets
            for c in w["spec"]["template"]["spec"]["containers"]
            for p in c.get("ports", [])
        }
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            assert isinstance(target, int) or target in port_names, f"{service['metadata']['name']}: no port {target}"


def test_workers_are_a_statefulset_with_a_data_dir_per_pod() -> None:
    (workers,) = of_kind("StatefulSet")
    spec = workers["spec"]
    (headless,) = [s for s in of_kind("Service") if s["metadata"]["name"] == spec["serviceName"]]
    assert headless["spec"].get("clusterIP") == "None", "serviceName is a headless Service"
    assert headless["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    (container,) = spec["template"]["spec"]["containers"]
    assert container["args"][0] == "worker"
    env = container_env(container)
    claims = {claim["metadata"]["name"] for claim in spec["volumeClaimTemplates"]}
    mounts = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
    assert mounts.get(env["DATA_DIR"]) in claims, "DATA_DIR is on the pod's own claim"
    assert env["STORE"].startswith("rocksdb://")
    assert env["WEB_ADVERTISED_HOST"].endswith("." + spec["serviceName"]), "advertises its stable DNS name"
    assert spec["replicas"] <= int(effective(env, "CAPTURED_PARTITIONS"))


def test_containers_run_the_one_image_with_real_commands_and_settings() -> None:
    fields = set(Settings.model_fields)
    images = {c["image"] for _, c in containers()}
    assert len(images) == 1, f"one image for every service: {images}"
    assert {c["args"][0] for _, c in containers()} >= {"worker", "bridge", "processor"}
    for owner, container in containers():
        assert "command" not in container, f"{owner} overrides the image's ENTRYPOINT"
        args = container["args"]
        assert isinstance(cli, click.Group)
        command = cli.get_command(click.Context(cli), args[0])
        assert command is not None, f"{owner}: no subcommand {args[0]!r}"
        with command.make_context(args[0], args[1:], parent=click.Context(cli)):
            pass
        names = [item["name"] for item in container.get("env", [])]
        referenced = {
            ref for item in container.get("env", []) for ref in re.findall(r"\$\((\w+)\)", item.get("value", ""))
        }
        for item in container.get("env", []):
            helper = "fieldRef" in item.get("valueFrom", {}) and item["name"] in referenced
            assert item["name"].lower() in fields or helper, f"{owner}: {item['name']} is not a Settings variable"
        assert len(names) == len(set(names)), f"{owner} sets a variable twice"
        Settings.model_validate({k.lower(): v for k, v in container_env(container).items() if k.lower() in fields})
        drain = float(effective(container_env(container), "SHUTDOWN_GRACE_SECONDS"))
        grace = next(w for w in workloads() if w["metadata"]["name"] == owner)["spec"]["template"]["spec"]
        assert grace.get("terminationGracePeriodSeconds", 30) > drain, f"{owner} is killed before its drain ends"


def test_config_map_and_secret_references_resolve() -> None:
    fields = set(Settings.model_fields)
    assert set(config_env()) and {k.lower() for k in config_env()} <= fields
    config_maps = {c["metadata"]["name"] for c in of_kind("ConfigMap")}
    secrets = {s["metadata"]["name"]: {**s.get("data", {}), **s.get("stringData", {})} for s in of_kind("Secret")}
    token_users = set()
    for owner, container in containers():
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] in config_maps, owner
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in secrets.get(ref["name"], {}), f"{owner}: no secret {ref['name']}/{ref['key']}"
                token_users.add(item["name"])
            assert "TOKEN" not in item["name"] or ref, f"{owner}: {item['name']} is set in plain text"
    assert {"API_TOKEN", "ORCHESTRATOR_TOKEN"} <= token_users
    assert not any("token" in k.lower() or "password" in k.lower() for k in config_env()), "secrets in the ConfigMap"


def test_keda_scales_the_processor_on_its_own_consumer_group_lag() -> None:
    (scaled,) = of_kind("ScaledObject")
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    (deployment,) = [d for d in of_kind("Deployment") if d["metadata"]["name"] == target["name"]]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "processor" and "--id" in args, "the processor's id is explicit, so its group is known"
    processor_id = args[args.index("--id") + 1]
    fields = set(Settings.model_fields)
    settings = Settings.model_validate(
        {k.lower(): v for k, v in container_env(container).items() if k.lower() in fields}
    )
    (trigger,) = scaled["spec"]["triggers"]
    meta = trigger["metadata"]
    assert trigger["type"] == "kafka"
    assert {"bootstrapServers", "consumerGroup", "topic", "lagThreshold"} <= set(meta)
    assert meta["consumerGroup"] == settings.processor_group(processor_id)
    assert meta["topic"] == settings.ready_topic(processor_id)
    assert meta["bootstrapServers"] == settings.bootstrap_servers
    assert int(meta["lagThreshold"]) > 0
    spec = scaled["spec"]
    assert 1 <= spec.get("minReplicaCount", 0) <= spec["maxReplicaCount"] <= settings.processor_partitions


# --- the relay and real-camera captures in compose ----------------------------------------------

_DEFAULT_RE = re.compile(r"\$\{([A-Z_][A-Z0-9_]*):-([^}]*)\}")


def interpolated(text: str) -> str:
    """A compose value with each ``${VAR:-default}`` at its default (no VAR set)."""
    return _DEFAULT_RE.sub(lambda m: m.group(2), text)


def _raw_sources(svc: dict[str, Any]) -> list[str]:
    argv = _argv(svc)
    return [argv[i + 1] for i, word in enumerate(argv[:-1]) if word == "--source"]


def test_interpolated_takes_the_defaults() -> None:
    assert interpolated("${A:-cam}=${B:-rtsp://h:554/s}") == "cam=rtsp://h:554/s"


def test_compose_runs_the_relay_and_serves_its_metrics() -> None:
    (relay,) = [svc for svc in app_services().values() if _argv(svc)[1] == "relay"]
    assert "profiles" not in relay, "idle until a detektr processor registers: it can always run"
    assert effective(_env(relay), "RELAY_METRICS_PORT") != "0"
    assert metrics_port_var(_argv(relay)) == "RELAY_METRICS_PORT"  # so the scrape test covers it


def test_compose_captures_a_sample_video_and_a_camera_url_from_the_environment() -> None:
    services = compose()["services"]
    captures = {name: svc for name, svc in app_services().items() if _raw_sources(svc)}
    files = {n: s for n, s in captures.items() if all("://" not in src for src in _raw_sources(s))}
    cameras = {n: s for n, s in captures.items() if n not in files}
    assert files and cameras, "a capture of a sample video and one of a camera URL"
    for name, svc in files.items():
        assert "profiles" not in svc, f"{name} needs no camera: it runs by default"
        assert "--loop" in _argv(svc)
        (source,) = _raw_sources(svc)
        camera_id, _, path = source.partition("=")
        assert camera_id and path.endswith(".mp4")
        folder = str(Path(path).parent)
        # The clip is written into a named volume by a one-shot service that capture waits for.
        volume = _named_volume(svc, folder)
        assert volume in (compose().get("volumes") or {}), f"{name} reads {path} from no named volume"
        writers = [d for d, c in svc["depends_on"].items() if c.get("condition") == "service_completed_successfully"]
        assert len(writers) == 1, f"{name} waits for no one-shot writer of {path}"
        writer = services[writers[0]]
        assert _named_volume(writer, folder) == volume
        assert writer["entrypoint"] == ["python", "-m", "capture.demo", path]
        assert writer.get("restart") == "no" and writer["image"] == app_image()
    for name, svc in cameras.items():
        assert svc.get("profiles"), f"{name} needs a real camera: it must not start by default"
        for raw in _raw_sources(svc):
            assert "${RTSP_URL" in raw, f"{name}: the camera URL comes from RTSP_URL"
            assert interpolated(raw).partition("=")[2].startswith(("rtsp://", "rtsps://"))
