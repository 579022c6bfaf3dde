"""Deprecated metric names kept as aliases (METRICS_V1_ALIASES, on by default).

A renamed or merged metric keeps its old name for the dashboards, alerts and recording rules
written against it: at each scrape an alias re-exposes, under the old name, samples read from
the metric that replaced it. It counts nothing itself, so the two names can never disagree.
The README's "Deprecated metric names" table lists each alias with the query that replaces it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Sample = tuple[dict[str, str], float]
Kind = Literal["counter", "gauge"]


@dataclass(frozen=True)
class Alias:
    """``name`` (a counter's without ``_total``) re-exposes ``samples()``; ``replacement`` is
    the query to use instead, as the README's table shows it."""

    name: str
    kind: Kind
    labelnames: tuple[str, ...]
    replacement: str
    samples: Callable[[], Iterable[Sample]]

    @property
    def exposed(self) -> str:
        return f"{self.name}_total" if self.kind == "counter" else self.name

    def family(self) -> Metric:
        documentation = f"Deprecated (v1 name): use {self.replacement}"
        family: CounterMetricFamily | GaugeMetricFamily
        if self.kind == "counter":
            family = CounterMetricFamily(self.name, documentation, labels=self.labelnames)
        else:
            family = GaugeMetricFamily(self.name, documentation, labels=self.labelnames)
        for labels, value in self.samples():
            family.add_metric([labels[name] for name in self.labelnames], value)
        return family


def values(metric: MetricWrapperBase) -> list[Sample]:
    """The current (labels, value) of each series of a counter or gauge."""
    found: list[Sample] = []
    for family in metric.collect():
        wanted = f"{family.name}_total" if family.type == "counter" else family.name
        found.extend((dict(sample.labels), sample.value) for sample in family.samples if sample.name == wanted)
    return found


def renamed(name: str, metric: MetricWrapperBase) -> Alias:
    """The old name of ``metric``, with the same labels and values."""
    kind: Kind = "counter" if metric._type == "counter" else "gauge"
    exposed = f"{metric._name}_total" if kind == "counter" else metric._name
    return Alias(name, kind, tuple(metric._labelnames), f"`{exposed}`", lambda: values(metric))


def summed(source: Iterable[Sample], by: Sequence[str]) -> list[Sample]:
    """``sum by (by)`` of ``source``."""
    totals: dict[tuple[str, ...], float] = {}
    for labels, value in source:
        key = tuple(labels[name] for name in by)
        totals[key] = totals.get(key, 0.0) + value
    return [(dict(zip(by, key, strict=True)), value) for key, value in totals.items()]


class AliasCollector(Collector):
    def __init__(self, aliases: Sequence[Alias]) -> None:
        self.aliases = tuple(aliases)

    def collect(self) -> Iterator[Metric]:
        for alias in self.aliases:
            yield alias.family()

    def describe(self) -> Iterator[Metric]:
        # The names alone (no samples), so the registry refuses an alias that clashes with a metric.
        for alias in self.aliases:
            kind = CounterMetricFamily if alias.kind == "counter" else GaugeMetricFamily
            yield kind(alias.name, "", labels=alias.labelnames)


_registered: dict[tuple[int, tuple[str, ...]], AliasCollector] = {}


def register(aliases: Sequence[Alias], registry: CollectorRegistry = REGISTRY) -> AliasCollector:
    """Expose ``aliases`` on ``registry``; registering the same names again is a no-op."""
    key = (id(registry), tuple(alias.name for alias in aliases))
    if key not in _registered:
        collector = AliasCollector(aliases)
        registry.register(collector)
        _registered[key] = collector
    return _registered[key]
