"""The hub's HTTP client for the server API (`carehub.api_contract`)."""

from __future__ import annotations

from typing import Any

import httpx

from carehub import api_contract as api

RETRYABLE_STATUS = frozenset({401, 403, 404, 408, 409, 425, 429})
"""4xx answers worth retrying: auth being fixed, ordering races, throttling."""


class UplinkError(Exception):
    """The request did not succeed; `retryable` says whether trying again can help."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class Uplink:
    def __init__(self, base_url: str, token: str, timeout_s: float) -> None:
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout_s),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.HTTPError as e:
            raise UplinkError(f"{method} {path}: {type(e).__name__}: {e}") from e
        if response.status_code >= 400:
            retryable = response.status_code >= 500 or response.status_code in RETRYABLE_STATUS
            raise UplinkError(
                f"{method} {path}: HTTP {response.status_code}: {response.text[:200]}", retryable
            )
        return response

    async def send(self, kind: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """Send one outbox entry; returns the server's JSON answer, if any."""
        path = {
            "alarm": api.ALARMS_PATH,
            "report": api.ALARM_REPORTS_PATH,
            "fault": api.FAULTS_PATH,
        }[kind]
        response = await self._request("POST", path, json=body)
        return response.json() if response.content else None

    async def updates(self, after: int, wait_s: float) -> api.AlarmUpdates:
        response = await self._request(
            "GET",
            api.ALARM_UPDATES_PATH,
            params={"after": after, "wait_s": wait_s},
            timeout=wait_s + 10,
        )
        return api.AlarmUpdates.model_validate_json(response.content)

    async def config(self) -> api.HubConfig:
        response = await self._request("GET", api.HUB_CONFIG_PATH)
        return api.HubConfig.model_validate_json(response.content)

    async def heartbeat(self, beat: api.HubHeartbeat) -> None:
        await self._request("POST", api.HUB_HEARTBEAT_PATH, json=beat.model_dump())
