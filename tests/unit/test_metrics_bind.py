"""Every /metrics server of ours binds METRICS_HOST (the worker's is on its web server, WEB_HOST)."""

from __future__ import annotations

from unittest import mock

from app.configs import bridge_config, process_config
from bridge import service
from core.settings import Settings
from frame_buffer_sdk.client import ProcessorClient


async def echo(frame: object) -> dict[str, object]:
    return {}


def test_sdk_processor_metrics_bind_metrics_host() -> None:
    settings = Settings(processor_metrics_port=9300, metrics_host="127.0.0.1")
    client = ProcessorClient(settings, "p1", ["x"], echo)
    with mock.patch("frame_buffer_sdk.client.start_http_server") as serve:
        client._serve_metrics()
    serve.assert_called_once_with(9300, addr="127.0.0.1")


def test_bridge_metrics_bind_metrics_host() -> None:
    settings = Settings(bridge_metrics_port=9301, metrics_host="10.1.2.3")
    with (
        mock.patch.object(service, "start_http_server") as serve,
        mock.patch.object(service, "_serve_until_signalled", mock.Mock(return_value=None)),
        mock.patch.object(service.asyncio, "run"),
    ):
        service.run_bridge(bridge_config(settings), process_config(settings, "bridge", settings.bridge_metrics_port))
    serve.assert_called_once_with(9301, addr="10.1.2.3")
