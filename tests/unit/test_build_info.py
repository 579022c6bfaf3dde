"""frame_buffer_build_info: one series per process, value 1, with the versions as labels."""

from __future__ import annotations

import platform

from prometheus_client import REGISTRY

from core.metrics import export_build_info
from frame_buffer_sdk.metrics import BUILD_INFO, distribution_version, set_build_info


def _series() -> list[dict[str, str]]:
    return [sample.labels for metric in BUILD_INFO.collect() for sample in metric.samples]


def test_a_processor_exports_the_sdk_version_and_no_faust() -> None:
    set_build_info("processor")
    sdk = distribution_version("frame-buffer-sdk")
    assert sdk
    labels = {"service": "processor", "version": sdk, "sdk_version": sdk, "python": platform.python_version()}
    assert _series() == [{**labels, "faust": ""}]
    assert REGISTRY.get_sample_value("frame_buffer_build_info", {**labels, "faust": ""}) == 1.0


def test_an_orchestrator_service_exports_its_own_and_faust_versions() -> None:
    export_build_info("bridge")
    (labels,) = _series()  # the processor's series set before is gone: one per process
    assert labels["service"] == "bridge"
    assert labels["version"] == distribution_version("frame-buffer-v2") != ""
    assert labels["faust"] == distribution_version("faust-streaming") != ""


def test_an_uninstalled_distribution_has_no_version() -> None:
    assert distribution_version("no-such-distribution-frame-buffer") == ""
