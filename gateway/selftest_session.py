"""The self-test's I/O: tell the running hub (retained ``bridge/selftest``) that alarms of
the home's devices are tests until the deadline, watch the devices and their acks on the
broker, feed `gateway.selftest.SelftestCore`, then post the report to the server.

The test alarm is the installer's own press, taking the hub's durable outbox path like a
real call (hub → outbox → server → dispatch → ack back to the button): what the home
relies on is what gets proven, and a failing link anywhere fails the test. Marked as a
test by the hub, it reaches the doctor as a clearly marked test and stays out of KPIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

import aiomqtt

from carehub.clock import Clock, SystemClock
from carehub.mqtt_contract import (
    DEVICE_TO_HUB,
    Ack,
    BridgeEvent,
    BridgeTopic,
    Channel,
    ContractError,
    SelftestMode,
    Topics,
    encode,
    parse_payload,
)
from carehub.settings import HubSettings
from gateway.intake import new_alarm_id
from gateway.pairing_session import PairingError, hub_client, hub_uplink, require_accounts
from gateway.selftest import BLUETOOTH_INSTRUCTION, INSTRUCTIONS, SelftestCore
from gateway.uplink import UplinkError
from gateway.zigbee.bridge import ZigbeeBridge

log = logging.getLogger(__name__)

MODE_MARGIN_S = 60.0
"""The hub keeps marking alarms as tests this long after the self-test's own timeout (a
fall is decided seconds after its impact); never longer. The pendant's drop raises no alarm
at all: the hub knows it by its impact (`gateway.fall_watch.FallWatch.take_selftest_drop`)."""


async def run_selftest(
    settings: HubSettings,
    timeout_s: float,
    say: Callable[[str], None] = print,
    clock: Clock | None = None,
) -> tuple[SelftestCore, str]:
    """Run the self-test; returns the core (checks) and what became of the report."""
    clock = clock or SystemClock()
    topics = Topics(settings.base_topic)
    accounts = require_accounts(settings)
    devices = {d.device_id: d.kind for d in (*accounts.devices, *accounts.zigbee)}
    zigbee = frozenset(d.device_id for d in accounts.zigbee)
    bridge = ZigbeeBridge(settings.zigbee2mqtt_topic) if settings.zigbee2mqtt_topic else None
    start = clock.now_ms()
    core = SelftestCore(
        devices,
        settings.battery_low_pct,
        start,
        zigbee=zigbee,
        bluetooth=frozenset(b.device_id for b in accounts.bluetooth),
        voice=settings.voice_source is not None,
    )
    mode = SelftestMode(
        v=1,
        active=True,
        until_ms=start + int((timeout_s + MODE_MARGIN_S) * 1000),
        devices=sorted(devices),
    )
    async with _broker(settings) as client:
        for c in sorted(DEVICE_TO_HUB | {Channel.ACK}):
            await client.subscribe(f"{topics.base}/+/{c.value}", qos=1)
        if bridge is not None:
            await client.subscribe(f"{bridge.base}/#", qos=1)
        await client.publish(topics.bridge(BridgeTopic.SELFTEST), encode(mode), qos=1, retain=True)
        await client.publish(
            topics.bridge(BridgeTopic.EVENT),
            encode(BridgeEvent(v=1, event="selftest_started", ts=start)),
            qos=1,
        )
        say(f"self-test started: {len(devices)} devices, {timeout_s:.0f} s")
        for device_id, kind in sorted(devices.items()):
            if device_id in core.bluetooth:
                say("  " + BLUETOOTH_INSTRUCTION.format(id=device_id))
            elif kind in INSTRUCTIONS:
                say("  " + INSTRUCTIONS[kind].format(id=device_id))
        if core.voice:
            say("  the button's test alarm calls the centre: have it answered there")
        try:
            await _watch(client, topics, core, clock, start + int(timeout_s * 1000), say, bridge)
        finally:
            await client.publish(
                topics.bridge(BridgeTopic.SELFTEST),
                encode(SelftestMode(v=1, active=False)),
                qos=1,
                retain=True,
            )
            await client.publish(
                topics.bridge(BridgeTopic.EVENT),
                encode(
                    BridgeEvent(
                        v=1,
                        event="selftest_finished",
                        ts=clock.now_ms(),
                        detail="passed" if core.passed else "failed",
                    )
                ),
                qos=1,
            )
    return core, await _post(settings, core, clock)


@contextlib.asynccontextmanager
async def _broker(settings: HubSettings) -> AsyncIterator[aiomqtt.Client]:
    """The hub's client; a broker that refuses the hub's account or cannot be reached ends
    the self-test with that reason (`PairingError`), not a traceback."""
    try:
        async with hub_client(settings, "selftest") as client:
            yield client
    except aiomqtt.MqttError as e:
        where = f"{settings.mqtt_host}:{settings.mqtt_port}"
        raise PairingError(f"broker {where}: {e}") from None


async def _watch(
    client: aiomqtt.Client,
    topics: Topics,
    core: SelftestCore,
    clock: Clock,
    deadline_ms: int,
    say: Callable[[str], None],
    bridge: ZigbeeBridge | None = None,
) -> None:
    messages = aiter(client.messages)
    done_before = 0
    while not core.passed and (left := deadline_ms - clock.now_ms()) > 0:
        try:
            message = await asyncio.wait_for(anext(messages), left / 1000)
        except TimeoutError:
            return
        payload = message.payload if isinstance(message.payload, bytes) else b""
        if bridge is not None and bridge.owns(str(message.topic)):
            paired = core.devices.__contains__
            for device_id, event in bridge.handle(
                str(message.topic), payload, paired, clock.now_ms()
            ):
                core.zigbee_seen(device_id, event)
        else:
            try:
                parsed = topics.parse(str(message.topic))
                body = parse_payload(parsed.channel, payload)
            except ContractError:
                continue  # the hub logs bad input; the self-test only looks at good news
            if parsed.channel is Channel.ACK:
                assert isinstance(body, Ack)
                core.acked(parsed.device_id, body)
            else:
                core.seen(parsed.device_id, body)
        done = sum(c.passed for c in core.checks)
        if done != done_before:
            done_before = done
            say(f"  {done}/{len(core.checks)} checks passed")


async def _post(settings: HubSettings, core: SelftestCore, clock: Clock) -> str:
    report = core.report(new_alarm_id(), clock.now_ms())
    uplink = hub_uplink(settings)
    if uplink is None:
        return "report NOT sent: no hub token"
    try:
        await uplink.selftest(report)
    except UplinkError as e:
        log.warning("self-test report not accepted: %s", e)
        return f"report NOT recorded on the server: {e}"
    finally:
        await uplink.aclose()
    return f"report {report.report_id} recorded on the server"
