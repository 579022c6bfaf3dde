"""The orchestrator's processor REST API, as the SDK calls it: register, heartbeat, deregister."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
from pydantic import SecretStr
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_delay, stop_when_event_set, wait_exponential

from frame_buffer_sdk.errors import FrameBufferError
from frame_buffer_sdk.models import ProcessorSpec

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT = aiohttp.ClientTimeout(total=10)


class RegistrationError(FrameBufferError, RuntimeError):
    """The orchestrator refused the registration, or did not answer in time."""


class RegistrationAbandoned(RegistrationError):
    """A stop came while the registration was still being retried. An attempt the orchestrator
    could not confirm may still land, so a leaving processor deregisters all the same."""


class _Unavailable(Exception):
    """Worth retrying: no connection, a timeout, or a 5xx/429 while the orchestrator starts."""


class OrchestratorAPI:
    """Thin client of ``/api/v1/processors``; the caller owns the aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: SecretStr | None = None) -> None:
        self._session = session
        self._base = base_url.rstrip("/") + "/api/v1/processors"
        # Per request, not on the session: a caller's session may talk to other hosts too.
        self._headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token is not None else {}

    async def register(
        self,
        spec: ProcessorSpec,
        within: float = 60.0,
        replica: str | None = None,
        stop: asyncio.Event | None = None,
    ) -> dict[str, Any]:
        """POST the spec until the orchestrator accepts it; returns the registry record.

        Retries while the orchestrator is unreachable or not ready for ``within`` seconds,
        then raises RegistrationError; a 4xx (a bad spec) raises at once with the server's reason.
        Once ``stop`` is set no new attempt starts (RegistrationAbandoned). The attempt in flight
        is never cut off: the orchestrator may register it whether or not the answer is read,
        and the caller has to know which.
        """
        stop = stop or asyncio.Event()

        async def pause(seconds: float) -> None:
            try:
                await asyncio.wait_for(stop.wait(), timeout=seconds)
            except TimeoutError:
                return
            # Stopped while pausing: raising here ends the retries without one more attempt.
            raise RegistrationAbandoned(f"stopped before the orchestrator accepted processor {spec.id!r}")

        try:
            async for attempt in AsyncRetrying(
                retry=retry_if_exception_type(_Unavailable),
                wait=wait_exponential(multiplier=0.2, max=5),
                stop=stop_after_delay(within) | stop_when_event_set(stop),  # type: ignore[arg-type]
                sleep=pause,
                reraise=True,
            ):
                with attempt:
                    return await self._register_once(spec, replica)
        except _Unavailable as exc:
            if stop.is_set():
                raise RegistrationAbandoned(
                    f"stopped before the orchestrator accepted processor {spec.id!r}: {exc}"
                ) from None
            raise RegistrationError(
                f"orchestrator at {self._base} did not accept processor {spec.id!r} within {within:.0f} s: {exc}"
            ) from None
        raise AssertionError("unreachable: tenacity either returns or raises")

    async def _register_once(self, spec: ProcessorSpec, replica: str | None) -> dict[str, Any]:
        url = f"{self._base}/register"
        spec_json = spec.model_dump(mode="json")
        try:
            async with self._session.post(
                url, json=spec_json, params=_replica(replica), headers=self._headers, timeout=_REQUEST_TIMEOUT
            ) as resp:
                if resp.status in (200, 201):
                    record: dict[str, Any] = await resp.json()
                    return record
                body = await resp.text()
                if resp.status >= 500 or resp.status == 429:
                    raise _Unavailable(f"HTTP {resp.status}: {body[:200]}")
                raise RegistrationError(f"orchestrator refused processor {spec.id!r}: HTTP {resp.status}: {body[:500]}")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _Unavailable(f"{type(exc).__name__}: {exc}") from exc

    async def heartbeat(self, processor_id: str, status: str = "healthy", replica: str | None = None) -> bool:
        """True when accepted; False when the orchestrator does not know the processor (re-register)."""
        body = {"processor_id": processor_id, "status": status, **({"replica": replica} if replica else {})}
        async with self._session.post(
            f"{self._base}/heartbeat", json=body, headers=self._headers, timeout=_REQUEST_TIMEOUT
        ) as resp:
            if resp.status == 404:
                return False
            if resp.status != 200:
                raise RuntimeError(f"heartbeat refused: HTTP {resp.status}: {(await resp.text())[:200]}")
            return True

    async def deregister(self, processor_id: str, replica: str | None = None) -> None:
        """DELETE the processor (with ``replica``: only that replica; the id goes with the last one).
        One that is already gone (404) is fine, and so is 202: accepted, not yet applied."""
        url = f"{self._base}/{processor_id}"
        async with self._session.delete(
            url, params=_replica(replica), headers=self._headers, timeout=_REQUEST_TIMEOUT
        ) as resp:
            if resp.status not in (200, 202, 204, 404):
                raise RuntimeError(f"deregister refused: HTTP {resp.status}: {(await resp.text())[:200]}")


def _replica(replica: str | None) -> dict[str, str]:
    return {"replica": replica} if replica else {}
