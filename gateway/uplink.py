"""The hub's HTTP client for the server API (`carehub.api_contract`).

Whatever the network or the server does — a reset, a timeout, a TLS failure, a captive
portal answering HTML with 200, a body of the wrong shape — comes out of `Uplink` as one
`UplinkError`, so the hub's loops have a single failure to back off from and never crash.
"""

from __future__ import annotations

from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from carehub import api_contract as api
from carehub.mqtt_contract import DEVICE_ID_PATTERN
from gateway.refusal import REFUSED_STATUS
from gateway.store import OutboxKind

RETRYABLE_STATUS = frozenset({401, 403, 404, 408, 409, 425, 429})
"""4xx answers worth retrying: auth being fixed, ordering races, throttling."""

PATHS = {
    OutboxKind.ALARM: api.ALARMS_PATH,
    OutboxKind.REPORT: api.ALARM_REPORTS_PATH,
    OutboxKind.FAULT: api.FAULTS_PATH,
    OutboxKind.SUMMARY: api.SUMMARIES_PATH,
}
"""Outbox kind → the endpoint that takes it."""

ANSWERS: dict[OutboxKind, type[BaseModel] | None] = {
    OutboxKind.ALARM: api.AlarmAccepted,
    OutboxKind.REPORT: api.AlarmStateAccepted,
    OutboxKind.FAULT: None,
    OutboxKind.SUMMARY: api.SummaryAccepted,
}
"""Outbox kind → the model of the server's answer (None: an empty ``204``)."""

_TRANSPORT_ERRORS = (httpx.HTTPError, httpx.StreamError, httpx.InvalidURL, OSError)
"""What the network can throw at us (ssl.SSLError is an OSError)."""

M = TypeVar("M", bound=BaseModel)


class UplinkError(Exception):
    """The request did not succeed; `retryable` says whether trying again can help, `status`
    is the server's HTTP status when it answered with an error; `retry_after_s`: the server
    is busy (``503``) and asked for this many seconds' rest."""

    def __init__(
        self,
        message: str,
        retryable: bool = True,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s

    @property
    def refused(self) -> bool:
        """The server refuses the hub's credential (every request will fail alike)."""
        return self.status in REFUSED_STATUS


class Uplink:
    def __init__(
        self,
        base_url: str,
        token: str,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`transport` replaces the network (tests: `httpx.MockTransport`)."""
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except _TRANSPORT_ERRORS as e:
            raise UplinkError(f"{method} {path}: {type(e).__name__}: {e}") from e
        status = response.status_code
        if status >= 400:
            retryable = status >= 500 or status in RETRYABLE_STATUS
            raise UplinkError(
                f"{method} {path}: HTTP {status}: {_excerpt(response)}",
                retryable,
                status,
                _retry_after(response) if status == 503 else None,
            )
        if not 200 <= status < 300:  # e.g. a captive portal's 302 to its login page
            raise UplinkError(f"{method} {path}: unexpected HTTP {status}: {_excerpt(response)}")
        return response

    async def send(self, kind: OutboxKind, body: dict[str, Any]) -> dict[str, Any] | None:
        """Send one outbox entry; returns the server's validated JSON answer, if any."""
        if kind not in PATHS:
            raise UplinkError(f"unknown outbox kind {kind!r}", retryable=False)
        response = await self._request("POST", PATHS[kind], json=body)
        model = ANSWERS[kind]
        if model is None:
            _expect_empty(response)
            return None
        return _parse(response, model).model_dump(mode="json")

    async def updates(self, after: int, wait_s: float) -> api.AlarmUpdates:
        response = await self._request(
            "GET",
            api.ALARM_UPDATES_PATH,
            params={"after": after, "wait_s": wait_s},
            timeout=wait_s + 10,
        )
        return _parse(response, api.AlarmUpdates)

    async def config(self) -> api.HubConfig:
        response = await self._request("GET", api.HUB_CONFIG_PATH)
        return _parse(response, api.HubConfig)

    async def heartbeat(self, beat: api.HubHeartbeat) -> None:
        response = await self._request("POST", api.HUB_HEARTBEAT_PATH, json=beat.model_dump())
        _expect_empty(response)

    async def calls(self, seen: str, wait_s: float) -> api.CallList:
        """This hub's calls, once they differ from the list whose digest is `seen`."""
        response = await self._request(
            "GET", api.CALLS_PATH, params={"seen": seen, "wait_s": wait_s}, timeout=wait_s + 10
        )
        return _parse(response, api.CallList)

    async def offer_call(self, offer: api.CallOffer) -> None:
        _expect_empty(await self._request("POST", api.CALLS_PATH, json=offer.model_dump()))

    async def answer_call(self, call_id: str, answer: api.CallAnswer) -> None:
        path = f"{api.CALLS_PATH}/{_path_id(call_id)}/answer"
        _expect_empty(await self._request("POST", path, json=answer.model_dump()))

    async def hangup_call(self, call_id: str, hangup: api.CallHangup) -> None:
        path = f"{api.CALLS_PATH}/{_path_id(call_id)}/hangup"
        _expect_empty(await self._request("POST", path, json=hangup.model_dump(mode="json")))

    async def register_device(self, device_id: str, registration: api.DeviceRegistration) -> None:
        """A device just paired on this hub (PUT, idempotent: pairing it again is fine)."""
        await self._request(
            "PUT",
            f"{api.HUB_DEVICES_PATH}/{_path_id(device_id)}",
            json=registration.model_dump(mode="json"),
        )

    async def remove_device(self, device_id: str) -> bool:
        """A device unpaired on this hub (DELETE): True when the server removed it, False
        when it had no such device of this hub (404: nothing to remove there)."""
        try:
            await self._request("DELETE", f"{api.HUB_DEVICES_PATH}/{_path_id(device_id)}")
        except UplinkError as e:
            if "HTTP 404" not in str(e):
                raise
            return False
        return True

    async def selftest(self, report: api.SelftestReport) -> None:
        """Record an installer's self-test on the household (``report_id`` dedups)."""
        await self._request("POST", api.SELFTESTS_PATH, json=report.model_dump(mode="json"))


def _path_id(device_id: str) -> str:
    """A device id as a path segment: the contract's pattern has nothing to escape."""
    if not DEVICE_ID_PATTERN.match(device_id):
        raise UplinkError(f"invalid device id {device_id!r}", retryable=False)
    return device_id


def _parse(response: httpx.Response, model: type[M]) -> M:
    """The body as `model`; anything else (HTML, truncated JSON, wrong shape) is retryable:
    a captive portal or a proxy in between goes away, a server upgrade gets fixed."""
    try:
        return model.model_validate_json(response.content)
    except ValidationError as e:
        where = f"{response.request.method} {response.request.url.path}"
        first = e.errors()[0]
        raise UplinkError(
            f"{where}: answer is not a valid {model.__name__}"
            f" ({first['type']} at {'.'.join(map(str, first['loc'])) or 'body'}):"
            f" {_excerpt(response)}"
        ) from None


def _expect_empty(response: httpx.Response) -> None:
    """Endpoints that answer ``204``: a body means someone else answered (a portal)."""
    if response.content.strip():
        where = f"{response.request.method} {response.request.url.path}"
        raise UplinkError(f"{where}: expected no body, got: {_excerpt(response)}")


def _retry_after(response: httpx.Response) -> float | None:
    """A ``Retry-After`` in whole seconds (the form the server sends), else None."""
    value = response.headers.get("retry-after", "").strip()
    return float(value) if value.isdigit() and len(value) <= 6 else None


def _excerpt(response: httpx.Response) -> str:
    return repr(response.content[:120].decode("utf-8", "replace"))
