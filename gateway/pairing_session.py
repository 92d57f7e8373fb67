"""The installer's pairing window and device removal: MQTT and file I/O around the pure
decisions of `gateway.pairing`.

`pair` opens a window (the ACL lets the pairing account in, the broker is reloaded, retained
``bridge/pairing``), listens for announcements, asks the installer (or accepts all), and for
each accepted device: a new password, the broker's files rewritten and reloaded, the
credential sealed to the device's key and published on its credential topic, the device
registered on the server, and ``device_accepted`` on ``bridge/event`` so the running hub
knows it at once. Only announcements published during the window count: one the broker
kept (retained) from before is ignored. When the window closes the pairing account loses
its rights again, and nothing of the window stays on the broker: every retained message
under ``<base>/pair/`` is cleared and the sessions of the client ids that announced are
ended (a persistent session could otherwise collect a credential later).

`remove` undoes a pairing: files rewritten, broker reloaded (mosquitto 2.0 drops a connected
client whose account is gone on reload; the end-to-end test checks it), ``device_removed``,
and a DELETE on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import aiomqtt

from carehub import api_contract as api
from carehub.clock import Clock, SystemClock
from carehub.mqtt_contract import (
    PAIR_LEVEL,
    BridgeEvent,
    BridgeEventKind,
    BridgeTopic,
    Channel,
    ContractError,
    PairAnnounce,
    PairingWindow,
    SealedAccount,
    Topics,
    encode,
    parse_model,
)
from carehub.pairing_seal import seal
from carehub.settings import HubSettings
from gateway.ble import pairing as ble
from gateway.ble.transport import (
    Advertisement,
    BleRadio,
    BondError,
    RadioError,
    normal_address,
)
from gateway.broker_auth import hash_password
from gateway.broker_files import load_accounts, reload_broker, write_security
from gateway.device_link import hub_credentials
from gateway.pairing import (
    BluetoothLink,
    BrokerAccounts,
    PairedDevice,
    decide,
    device_id_for,
    new_password,
    window_open,
)
from gateway.uplink import Uplink, UplinkError
from gateway.zigbee import pairing as zigbee
from gateway.zigbee import translate as z2m

log = logging.getLogger(__name__)

Confirm = Callable[[PairAnnounce], Awaitable[bool]]
Ask = Callable[[str], Awaitable[bool]]
"""Asks the installer a yes/no question (a Zigbee device to confirm)."""
Say = Callable[[str], None]
PICKUP_GRACE_S = 5.0
"""After the window closes, how long an accepted device has to come online with its own
account before its (sealed) retained credential is cleared anyway."""
SWEEP_TIMEOUT_S = 10.0
"""Longest wait for the broker's retained pairing messages when the window closes."""
MAX_SESSIONS_ENDED = 1000
"""Client ids whose sessions are ended at the close, at most (accepted devices first): a
flood of announcements cannot make the close last forever; the others can read nothing."""


class PairingError(RuntimeError):
    """Pairing cannot start (no broker configuration, broker unreachable)."""


@dataclass
class Leftovers:
    """What a window left on the broker, to clear when it closes."""

    topics: set[str] = field(default_factory=set)
    """Topics under ``<base>/pair/`` that a pairing client published on (maybe retained)."""
    client_ids: set[str] = field(default_factory=set)
    """Client ids that published there (maybe with a persistent session)."""


@dataclass
class PairingResult:
    accepted: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    not_registered: list[str] = field(default_factory=list)
    """Paired on the hub but the server's registration failed (see the log)."""


def require_accounts(settings: HubSettings) -> BrokerAccounts:
    accounts = load_accounts(settings.hub_broker_dir)
    if accounts is None:
        raise PairingError(
            f"no broker accounts in {settings.hub_broker_dir}: run `carehub hub broker-config`"
        )
    return accounts


def hub_client(settings: HubSettings, role: str) -> aiomqtt.Client:
    username, password = hub_credentials(settings)
    return aiomqtt.Client(
        settings.mqtt_host,
        settings.mqtt_port,
        identifier=f"{settings.mqtt_client_id}-{role}-{os.getpid()}",
        username=username,
        password=password,
        clean_session=True,
    )


def hub_uplink(settings: HubSettings) -> Uplink | None:
    token = settings.hub_token.get_secret_value()
    if not token:
        return None
    return Uplink(settings.server_url, token, settings.upload_timeout_s)


class PairingSession:
    def __init__(
        self,
        settings: HubSettings,
        confirm: Confirm,
        say: Say = print,
        clock: Clock | None = None,
        pickup_grace_s: float = PICKUP_GRACE_S,
        ask: Ask | None = None,
        bluetooth: BleRadio | None = None,
    ) -> None:
        self.settings = settings
        self.ask = ask
        self.bluetooth = bluetooth
        """The radio, when the hub pairs Bluetooth health devices (`gateway.ble.pairing`)."""
        self._turn = asyncio.Lock()
        """Held while a device is asked about and paired: the installer gets one question
        at a time (MQTT, Zigbee and Bluetooth devices come concurrently), and the accounts
        change one device at a time."""
        self.z2m = (
            zigbee.Z2mTopics(settings.zigbee2mqtt_topic) if settings.zigbee2mqtt_topic else None
        )
        self._z_joined: set[str] = set()
        self._z_handled: set[str] = set()
        self._z_transaction = f"carehub-pair-{os.getpid()}"
        self._z_answered = False
        self.pickup_grace_s = pickup_grace_s
        self.topics = Topics(settings.base_topic)
        self.confirm = confirm
        self.say = say
        self.clock = clock or SystemClock()
        self.accounts = require_accounts(settings)
        self._acl_open = False
        self.closed_early = asyncio.Event()

    def close(self) -> None:
        """End the window now (the installer is done early): it closes as at its end."""
        self.closed_early.set()

    async def _event(
        self, client: aiomqtt.Client, what: BridgeEventKind, **fields: str | None
    ) -> None:
        event = BridgeEvent(v=1, event=what, ts=self.clock.now_ms(), **fields)  # type: ignore[arg-type]
        await client.publish(self.topics.bridge(BridgeTopic.EVENT), encode(event), qos=1)

    async def pair(self, seconds: float, accept_all: bool) -> PairingResult:
        result = PairingResult()
        seen: dict[str, str] = {}
        waiting: set[str] = set()  # accepted, not yet seen online with their own account
        left = Leftovers()
        uplink = hub_uplink(self.settings)
        try:
            async with hub_client(self.settings, "pair") as client:
                await self._open_acl()
                until = self.clock.now_ms() + int(seconds * 1000)
                try:
                    await client.subscribe(self.topics.pair_everything(), qos=1)
                    await client.subscribe(
                        f"{self.topics.base}/+/{Channel.AVAILABILITY.value}", qos=1
                    )
                    if self.z2m is not None:
                        await self._open_zigbee(client, seconds)
                    window = PairingWindow(v=1, open=True, until_ms=until)
                    await client.publish(
                        self.topics.bridge(BridgeTopic.PAIRING), encode(window), qos=1, retain=True
                    )
                    await self._event(client, "pairing_opened")
                    self.say(f"pairing open for {seconds:.0f} s: switch the devices on")
                    scanning = self._scan_bluetooth(client, until, accept_all, result, uplink)
                    try:
                        await self._listen(
                            client, until, seen, waiting, accept_all, result, uplink, left
                        )
                    finally:
                        await self._stop(scanning)
                finally:
                    closed = PairingWindow(v=1, open=False)
                    await client.publish(
                        self.topics.bridge(BridgeTopic.PAIRING), encode(closed), qos=1, retain=True
                    )
                    await self._event(client, "pairing_closed")
                    if self.z2m is not None:
                        await self._close_zigbee(client, left)
                    await self._clear_credentials(client, seen, waiting, left)
                    await self._close(client, left, result)
        except aiomqtt.MqttError as e:
            where = f"{self.settings.mqtt_host}:{self.settings.mqtt_port}"
            raise PairingError(f"broker {where}: {e}") from None
        finally:
            if self._acl_open:  # the broker went away mid-window: close it all the same
                await self._close_acl()
            if uplink:
                await uplink.aclose()
        self.say("pairing closed")
        return result

    async def _write_and_reload(self, accounts: BrokerAccounts, pairing_open: bool) -> str:
        write_security(
            self.settings.hub_broker_dir, accounts, self.settings.base_topic, pairing_open
        )
        return await asyncio.to_thread(
            reload_broker, self.settings.hub_broker_dir, self.settings.hub_broker_reload_command
        )

    async def _open_acl(self) -> None:
        """Let the pairing account announce and read credentials. mosquitto reloads on the
        signal before it reads anything sent after it, so the window is open for the
        devices once this returns."""
        self._acl_open = True
        try:
            await self._write_and_reload(self.accounts, pairing_open=True)
        except (RuntimeError, OSError) as e:
            with contextlib.suppress(OSError, ValueError):
                write_security(
                    self.settings.hub_broker_dir, self.accounts, self.settings.base_topic
                )
            self._acl_open = False
            raise PairingError(f"cannot open the pairing window: {e}") from None

    async def _close_acl(self) -> None:
        try:
            await self._write_and_reload(self.accounts, pairing_open=False)
            self._acl_open = False
        except (RuntimeError, OSError) as e:
            log.error("pairing window: the broker still lets the pairing account in: %s", e)
            self.say(
                f"the broker was not reloaded ({e}): the pairing account keeps its rights until"
                " `systemctl reload carehub-broker`"
            )

    async def _close(self, client: aiomqtt.Client, left: Leftovers, result: PairingResult) -> None:
        """Take the pairing account's rights back, clear what the window left retained
        under ``<base>/pair/``, end the sessions of the client ids that announced."""
        await self._close_acl()
        await self._sweep(client, left)
        for topic in sorted(left.topics):
            await client.publish(topic, b"", qos=1, retain=True)
        accepted = [c for c in result.accepted if c in left.client_ids]
        others = sorted(left.client_ids - set(accepted))
        ids = (accepted + others)[:MAX_SESSIONS_ENDED]
        if len(left.client_ids) > len(ids):
            log.warning(
                "pairing window: %d client ids announced; the sessions of %d were ended",
                len(left.client_ids),
                len(ids),
            )
        for client_id in ids:
            await self._end_session(client_id)

    async def _sweep(self, client: aiomqtt.Client, left: Leftovers) -> None:
        """Note every retained message under ``<base>/pair/``: subscribing again makes the
        broker send them all, then the retained ``bridge/pairing`` (subscribed next) comes
        after them, which says the sweep is complete."""
        sentinel = self.topics.bridge(BridgeTopic.PAIRING)
        await client.subscribe(self.topics.pair_everything(), qos=1)
        await client.subscribe(sentinel, qos=1)
        messages = aiter(client.messages)
        deadline = self.clock.monotonic() + SWEEP_TIMEOUT_S
        while (wait := deadline - self.clock.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(anext(messages), wait)
            except TimeoutError:
                log.warning("pairing window: the broker's retained messages did not all come")
                return
            if str(message.topic) == sentinel and message.retain:
                return
            self._note(message, left)

    async def _end_session(self, client_id: str) -> None:
        """Connect as `client_id` with a clean session and leave: the broker drops that
        client id's session (and anything queued in it) and whoever is connected with it."""
        username, password = hub_credentials(self.settings)
        try:
            async with aiomqtt.Client(
                self.settings.mqtt_host,
                self.settings.mqtt_port,
                identifier=client_id,
                username=username,
                password=password,
                clean_session=True,
            ):
                pass
        except aiomqtt.MqttError as e:
            log.warning("pairing window: session of %r not ended: %s", client_id, e)

    def _note(self, message: aiomqtt.Message, left: Leftovers) -> None:
        """Remember a message a pairing client published under ``<base>/pair/`` (not the
        hub's own credentials)."""
        topic = str(message.topic)
        if not topic.startswith(f"{self.topics.base}/{PAIR_LEVEL}/") or topic.endswith(
            "/credential"
        ):
            return
        left.topics.add(topic)
        client_id = self.topics.pair_client_id(topic)
        if client_id is not None:
            left.client_ids.add(client_id)

    async def _listen(
        self,
        client: aiomqtt.Client,
        until: int,
        seen: dict[str, str],
        waiting: set[str],
        accept_all: bool,
        result: PairingResult,
        uplink: Uplink | None,
        left: Leftovers,
    ) -> None:
        messages = aiter(client.messages)
        while (remaining := until - self.clock.now_ms()) > 0:
            message = await self._next(messages, remaining / 1000)
            if message is None:
                return
            async with self._turn:  # one question, one change of the accounts at a time
                topic = str(message.topic)
                payload = message.payload if isinstance(message.payload, bytes) else b""
                if self.z2m is not None and topic.startswith(self.z2m.base + "/"):
                    if not message.retain:
                        await self._on_zigbee(
                            client, topic, payload, until, accept_all, result, uplink
                        )
                    continue
                if topic.endswith(f"/{Channel.AVAILABILITY.value}"):
                    if payload == b"online":
                        waiting.discard(topic.split("/")[-2])
                    continue
                self._note(message, left)
                if topic.endswith("/credential"):
                    continue  # ours
                if message.retain:  # kept by the broker from before this window: stale
                    log.info("pairing: ignored %s, published before this window", topic[:200])
                    continue
                try:
                    hardware_id = self.topics.parse_pair_announce(topic)
                    announce = parse_model(PairAnnounce, payload)
                except ContractError as e:
                    log.warning("pairing: bad announcement on %s: %s", topic[:200], e)
                    continue
                decision = decide(
                    announce,
                    hardware_id,
                    self.accounts,
                    seen,
                    window_open(until, self.clock.now_ms()),
                    accept_all,
                )
                if decision.verdict == "ignore":
                    continue
                seen.setdefault(announce.hardware_id, announce.public_key)
                await self._event(
                    client,
                    "device_announced",
                    hardware_id=announce.hardware_id,
                    kind=announce.kind,
                )
                accept = decision.verdict == "accept" or (
                    decision.verdict == "ask" and await self.confirm(announce)
                )
                if not accept:
                    reason = decision.reason or "declined by the installer"
                    result.refused.append(announce.hardware_id)
                    self.say(f"refused {announce.kind} {announce.hardware_id}: {reason}")
                    await self._event(
                        client,
                        "device_refused",
                        hardware_id=announce.hardware_id,
                        kind=announce.kind,
                        detail=reason[:200],
                    )
                    continue
                try:
                    device_id = await self._accept(client, announce, uplink, result)
                except (ValueError, RuntimeError, OSError) as e:  # SealError is a ValueError
                    log.error("pairing %s failed: %s", announce.hardware_id, e)
                    self.say(f"could not pair {announce.hardware_id}: {e}")
                    result.refused.append(announce.hardware_id)
                    continue
                waiting.add(device_id)
                result.accepted.append(device_id)

    # ------------------------------------------------------------ Bluetooth

    def _scan_bluetooth(
        self,
        client: aiomqtt.Client,
        until: int,
        accept_all: bool,
        result: PairingResult,
        uplink: Uplink | None,
    ) -> asyncio.Task[None] | None:
        """Scan for Bluetooth health devices while the window is open (none without a radio)."""
        if self.bluetooth is None:
            return None
        self.say("Bluetooth: scanning for health devices: put them in pairing mode")
        return asyncio.create_task(
            self._bluetooth(self.bluetooth, client, until, accept_all, result, uplink)
        )

    async def _stop(self, scanning: asyncio.Task[None] | None) -> None:
        """Stop scanning once the device being asked about (if any) is done with."""
        if scanning is None:
            return
        async with self._turn:
            scanning.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await scanning

    async def _bluetooth(
        self,
        radio: BleRadio,
        client: aiomqtt.Client,
        until: int,
        accept_all: bool,
        result: PairingResult,
        uplink: Uplink | None,
    ) -> None:
        handled: set[str] = set()
        try:
            async for advert in radio.advertisements():
                async with self._turn:
                    await self._on_bluetooth(
                        radio, client, advert, handled, until, accept_all, result, uplink
                    )
        except RadioError as e:
            log.error("bluetooth: cannot scan: %s", e)
            self.say(f"Bluetooth: cannot scan ({e}): no Bluetooth device can be paired")

    async def _on_bluetooth(
        self,
        radio: BleRadio,
        client: aiomqtt.Client,
        advert: Advertisement,
        handled: set[str],
        until: int,
        accept_all: bool,
        result: PairingResult,
        uplink: Uplink | None,
    ) -> None:
        open_now = window_open(until, self.clock.now_ms())
        decision = ble.decide(advert, handled, open_now, accept_all)
        if decision.verdict == "ignore":
            return
        address = normal_address(advert.address)
        handled.add(address)
        device_id = ble.device_id_for(address)
        accept = decision.verdict == "accept" or (
            self.ask is not None and await self.ask(ble.question(advert))
        )
        if accept:
            try:
                await radio.bond(address)
            except BondError as e:
                accept, reason = False, f"bonding failed: {e}"
        else:
            reason = "declined by the installer"
        if not accept:
            result.refused.append(address)
            self.say(f"refused Bluetooth device {address}: {reason}")
            await self._event(client, "device_refused", hardware_id=device_id, detail=reason[:200])
            return
        password = new_password()
        device = PairedDevice(
            device_id, ble.KIND.value, address, hash_password(password), self.clock.now_ms()
        )
        before = self.accounts
        after = before.with_bluetooth(BluetoothLink(address, device_id, password), device)
        try:
            await self._write_and_reload(after, pairing_open=True)
        except RuntimeError as e:
            write_security(
                self.settings.hub_broker_dir, before, self.settings.base_topic, pairing_open=True
            )
            result.refused.append(address)
            self.say(f"could not pair Bluetooth device {address}: {e}")
            return
        self.accounts = after
        await self._event(
            client, "device_accepted", hardware_id=device_id, device_id=device_id, kind=ble.KIND
        )
        registered = await _register_kind(uplink, device_id, ble.KIND.value, address)
        if not registered:
            result.not_registered.append(device_id)
        result.accepted.append(device_id)
        self.say(
            f"paired Bluetooth {address} ({ble.services_text(advert.services)}) as {device_id}"
            + ("" if registered else " (NOT registered on the server yet: see the log)")
        )

    async def _next(
        self, messages: AsyncIterator[aiomqtt.Message], timeout_s: float
    ) -> aiomqtt.Message | None:
        """The next message, or None at the window's end or when it is closed early."""
        if self.closed_early.is_set():
            return None
        getting = asyncio.ensure_future(anext(messages))
        closing = asyncio.ensure_future(self.closed_early.wait())
        try:
            await asyncio.wait(
                {getting, closing}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            closing.cancel()
            if not getting.done():
                getting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getting
        return getting.result() if not getting.cancelled() else None

    async def _accept(
        self,
        client: aiomqtt.Client,
        announce: PairAnnounce,
        uplink: Uplink | None,
        result: PairingResult,
    ) -> str:
        device_id = device_id_for(announce)
        password = new_password()
        credential = seal(  # first: a bad key refuses the device before anything changes
            announce.public_key,
            announce.hardware_id,
            device_id,
            SealedAccount(v=1, username=device_id, password=password),
        )
        device = PairedDevice(
            device_id=device_id,
            kind=announce.kind,
            hardware_id=announce.hardware_id,
            password_hash=hash_password(password),
            paired_at_ms=self.clock.now_ms(),
        )
        before, after = self.accounts, self.accounts.with_device(device)
        try:
            how = await self._write_and_reload(after, pairing_open=True)
        except RuntimeError:  # not paired after all: the files say so too
            base = self.settings.base_topic
            write_security(self.settings.hub_broker_dir, before, base, pairing_open=True)
            raise
        self.accounts = after
        log.info("broker reloaded (%s) with the account of %s", how, device_id)
        await client.publish(
            self.topics.pair_credential(announce.hardware_id),
            encode(credential),
            qos=1,
            retain=True,
        )
        await self._event(
            client,
            "device_accepted",
            hardware_id=announce.hardware_id,
            device_id=device_id,
            kind=announce.kind,
        )
        registered = await _register(uplink, device_id, announce)
        if not registered:
            result.not_registered.append(device_id)
        self.say(
            f"paired {announce.kind} {device_id}"
            + ("" if registered else " (NOT registered on the server yet: see the log)")
        )
        return device_id

    # ------------------------------------------------------------ Zigbee2MQTT

    async def _open_zigbee(self, client: aiomqtt.Client, seconds: float) -> None:
        """Zigbee2MQTT's permit-join for the window; its answer comes to `_listen`."""
        assert self.z2m is not None
        await client.subscribe(self.z2m.event, qos=1)
        await client.subscribe(self.z2m.response("permit_join"), qos=1)
        body = zigbee.permit_join(seconds, self._z_transaction + "-open")
        await client.publish(self.z2m.request("permit_join"), body, qos=1)
        if seconds > zigbee.PERMIT_JOIN_MAX_S:
            self.say(
                f"Zigbee devices can join during the first {zigbee.PERMIT_JOIN_MAX_S} s only"
                " (Zigbee2MQTT's longest permit-join)"
            )

    async def _close_zigbee(self, client: aiomqtt.Client, left: Leftovers) -> None:
        """Close permit-join and wait (briefly) for Zigbee2MQTT to confirm it."""
        assert self.z2m is not None
        transaction = self._z_transaction + "-close"
        await client.publish(
            self.z2m.request("permit_join"), zigbee.permit_join(0, transaction), qos=1
        )
        answer = await self._z2m_answer(client, "permit_join", transaction, left)
        if not self._z_answered:
            self.say(
                f"Zigbee2MQTT never answered on {self.z2m.base}/bridge/: is it running on this"
                " broker with that base topic? No Zigbee device could join"
            )
        elif answer is None or not answer[0]:
            self.say(
                "Zigbee2MQTT did not confirm permit-join closed"
                + (f" ({answer[1]})" if answer else "")
                + ": close it in its frontend"
            )

    async def _z2m_answer(
        self, client: aiomqtt.Client, request: str, transaction: str, left: Leftovers | None
    ) -> tuple[bool, str] | None:
        """Zigbee2MQTT's response to `transaction`, or None after `RESPONSE_WAIT_S`."""
        assert self.z2m is not None
        topic = self.z2m.response(request)
        messages = aiter(client.messages)
        deadline = self.clock.monotonic() + zigbee.RESPONSE_WAIT_S
        while (wait := deadline - self.clock.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(anext(messages), wait)
            except TimeoutError:
                return None
            if left is not None:
                self._note(message, left)
            if str(message.topic) == topic and isinstance(message.payload, bytes):
                answer = zigbee.response_to(message.payload, transaction)
                if answer is not None:
                    return answer
        return None

    async def _on_zigbee(
        self,
        client: aiomqtt.Client,
        topic: str,
        payload: bytes,
        until: int,
        accept_all: bool,
        result: PairingResult,
        uplink: Uplink | None,
    ) -> None:
        assert self.z2m is not None
        if topic == self.z2m.response("permit_join"):
            answer = zigbee.response_to(payload, self._z_transaction + "-open")
            if answer is not None:
                self._z_answered = True
                ok, error = answer
                self.say(
                    "Zigbee2MQTT permit-join open: pair the Zigbee devices now"
                    if ok
                    else f"Zigbee2MQTT refused permit-join ({error}): no Zigbee device can join"
                )
            return
        if topic != self.z2m.event:
            return
        try:
            notice = z2m.parse_bridge_event(payload)
        except z2m.ZigbeeError as e:
            log.warning("pairing: bad Zigbee2MQTT event: %s", e)
            return
        self._z_answered = True  # an event means Zigbee2MQTT is there
        decision = zigbee.decide_interview(
            notice,
            self._z_joined,
            self._z_handled,
            window_open(until, self.clock.now_ms()),
            self.accounts,
            accept_all,
        )
        if decision.verdict == "ignore" or notice.ieee is None:
            return
        ieee = notice.ieee
        self._z_handled.add(ieee)
        model = decision.model
        accept = decision.verdict == "accept"
        if decision.verdict == "ask" and model is not None and notice.device is not None:
            d = notice.device
            question = (
                f"pair Zigbee {d.vendor} {d.model} {ieee} ({d.friendly_name!r}) as a {model.kind}?"
            )
            accept = self.ask is not None and await self.ask(question)
        if not accept or model is None:
            reason = decision.reason or "declined by the installer"
            result.refused.append(ieee)
            self.say(f"refused Zigbee device {ieee}: {reason}")
            await self._event(client, "device_refused", hardware_id=ieee, detail=reason[:200])
            return
        device_id = z2m.device_id_for(ieee)
        device = PairedDevice(device_id, model.kind, ieee, "", self.clock.now_ms())
        self.accounts = self.accounts.with_zigbee(device)
        write_security(
            self.settings.hub_broker_dir, self.accounts, self.settings.base_topic, pairing_open=True
        )
        await self._event(
            client, "device_accepted", hardware_id=ieee, device_id=device_id, kind=model.kind
        )
        registered = await _register_kind(uplink, device_id, model.kind, ieee)
        if not registered:
            result.not_registered.append(device_id)
        result.accepted.append(device_id)
        self.say(
            f"paired Zigbee {model.model} {device_id} as a {model.kind}"
            + ("" if registered else " (NOT registered on the server yet: see the log)")
        )

    async def _clear_credentials(
        self, client: aiomqtt.Client, seen: dict[str, str], waiting: set[str], left: Leftovers
    ) -> None:
        """Remove the retained credentials once their devices are online (or after a grace):
        sealed, they are useless to others, but nothing should linger on the broker."""
        deadline = self.clock.monotonic() + self.pickup_grace_s
        messages = aiter(client.messages)
        while waiting and (wait := deadline - self.clock.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(anext(messages), wait)
                self._note(message, left)
                topic = str(message.topic)
                if (
                    topic.endswith(f"/{Channel.AVAILABILITY.value}")
                    and message.payload == b"online"
                ):
                    waiting.discard(topic.split("/")[-2])
        for hardware_id in seen:
            await client.publish(self.topics.pair_credential(hardware_id), b"", qos=1, retain=True)


async def _register(uplink: Uplink | None, device_id: str, announce: PairAnnounce) -> bool:
    return await _register_kind(uplink, device_id, announce.kind, announce.hardware_id)


async def _register_kind(
    uplink: Uplink | None, device_id: str, kind: str, hardware_id: str
) -> bool:
    if uplink is None:
        log.warning("no hub token: %s not registered on the server", device_id)
        return False
    try:
        await uplink.register_device(
            device_id,
            api.DeviceRegistration(kind=api.DeviceKind(kind), hardware_id=hardware_id),
        )
    except UplinkError as e:
        log.warning("server registration of %s failed: %s", device_id, e)
        return False
    return True


async def remove_device(
    settings: HubSettings, device_id: str, clock: Clock | None = None
) -> list[str]:
    """Revoke a device at once; returns what was done, for the installer. Raises
    `PairingError` when the device is not paired here."""
    clock = clock or SystemClock()
    topics = Topics(settings.base_topic)
    accounts = require_accounts(settings)
    zigbee_device = accounts.zigbee_device(device_id)
    if accounts.device(device_id) is None and zigbee_device is None:
        raise PairingError(f"{device_id} is not paired with this hub (see `carehub hub devices`)")
    if zigbee_device is not None:  # no broker account: nothing to reload
        write_security(
            settings.hub_broker_dir, accounts.without_zigbee(device_id), settings.base_topic
        )
        done = [f"Zigbee device {device_id} forgotten by the hub's accounts"]
    else:
        accounts = accounts.without_device(device_id)
        write_security(settings.hub_broker_dir, accounts, settings.base_topic)
        done = [f"account of {device_id} removed from passwd and acl"]
        done.append(
            await asyncio.to_thread(
                reload_broker, settings.hub_broker_dir, settings.hub_broker_reload_command
            )
        )
    try:
        async with hub_client(settings, "remove") as client:
            if zigbee_device is not None:
                done.append(await _remove_from_zigbee2mqtt(settings, client, zigbee_device))
            event = BridgeEvent(v=1, event="device_removed", ts=clock.now_ms(), device_id=device_id)
            await client.publish(topics.bridge(BridgeTopic.EVENT), encode(event), qos=1)
            await client.publish(  # its retained presence goes with it
                topics.device(device_id, Channel.AVAILABILITY), b"", qos=1, retain=True
            )
        done.append("running hub told (bridge event device_removed)")
    except aiomqtt.MqttError as e:
        done.append(f"running hub NOT told (broker: {e}); it forgets the device at its restart")
    uplink = hub_uplink(settings)
    if uplink is None:
        done.append("server NOT told: no hub token")
    else:
        try:
            removed = await uplink.remove_device(device_id)
            done.append(
                "removed on the server"
                if removed
                else f"the server has no {device_id} for this hub: nothing to remove there"
            )
        except UplinkError as e:
            done.append(f"server NOT told ({e}): run `carehub hub remove {device_id}` again later")
        finally:
            await uplink.aclose()
    return done


async def _remove_from_zigbee2mqtt(
    settings: HubSettings, client: aiomqtt.Client, device: PairedDevice
) -> str:
    """Ask Zigbee2MQTT to remove the device from its network; when it does not answer or
    cannot (a sleeping battery device), remove it by force from its database. Returns what
    was done, for the installer."""
    if not settings.zigbee2mqtt_topic:
        return "Zigbee2MQTT NOT told: no zigbee2mqtt_topic set; remove it in its frontend"
    topics = zigbee.Z2mTopics(settings.zigbee2mqtt_topic)
    await client.subscribe(topics.response("device/remove"), qos=1)
    answer: tuple[bool, str] | None = None
    for force in (False, True):
        transaction = f"carehub-remove-{os.getpid()}-{int(force)}"
        body = zigbee.remove_request(device.hardware_id, transaction, force)
        await client.publish(topics.request("device/remove"), body, qos=1)
        answer = await _answer(client, topics.response("device/remove"), transaction)
        if answer is not None and answer[0]:
            how = "forced: it may still think it is in the network" if force else "left"
            return f"removed from Zigbee2MQTT ({how})"
    why = answer[1] if answer else f"no answer in {zigbee.RESPONSE_WAIT_S:.0f} s"
    return f"Zigbee2MQTT NOT told ({why}): remove {device.hardware_id} in its frontend"


async def _answer(client: aiomqtt.Client, topic: str, transaction: str) -> tuple[bool, str] | None:
    messages = aiter(client.messages)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + zigbee.RESPONSE_WAIT_S
    while (wait := deadline - loop.time()) > 0:
        try:
            message = await asyncio.wait_for(anext(messages), wait)
        except TimeoutError:
            return None
        if str(message.topic) == topic and isinstance(message.payload, bytes):
            answer = zigbee.response_to(message.payload, transaction)
            if answer is not None:
                return answer
    return None
