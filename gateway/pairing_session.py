"""The installer's pairing window and device removal: MQTT and file I/O around the pure
decisions of `gateway.pairing`.

`pair` opens a window (retained ``bridge/pairing``), listens for announcements, asks the
installer (or accepts all), and for each accepted device: a new password, the broker's
files rewritten and reloaded, the credential sealed to the device's key and published on
its credential topic, the device registered on the server, and ``device_accepted`` on
``bridge/event`` so the running hub knows it at once. `remove` undoes it: files rewritten,
broker reloaded (mosquitto 2.0 drops a connected client whose account is gone on reload;
the end-to-end test checks it), ``device_removed``, and a DELETE on the server.
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
from carehub.pairing_seal import SealError, seal
from carehub.settings import HubSettings
from gateway.broker_auth import hash_password
from gateway.broker_files import load_accounts, reload_broker, write_security
from gateway.device_link import hub_credentials
from gateway.pairing import (
    BrokerAccounts,
    PairedDevice,
    decide,
    device_id_for,
    new_password,
    window_open,
)
from gateway.uplink import Uplink, UplinkError

log = logging.getLogger(__name__)

Confirm = Callable[[PairAnnounce], Awaitable[bool]]
Say = Callable[[str], None]
PICKUP_GRACE_S = 5.0
"""After the window closes, how long an accepted device has to come online with its own
account before its (sealed) retained credential is cleared anyway."""


class PairingError(RuntimeError):
    """Pairing cannot start (no broker configuration, broker unreachable)."""


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
    ) -> None:
        self.settings = settings
        self.pickup_grace_s = pickup_grace_s
        self.topics = Topics(settings.base_topic)
        self.confirm = confirm
        self.say = say
        self.clock = clock or SystemClock()
        self.accounts = require_accounts(settings)
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
        until = self.clock.now_ms() + int(seconds * 1000)
        seen: dict[str, str] = {}
        waiting: set[str] = set()  # accepted, not yet seen online with their own account
        uplink = hub_uplink(self.settings)
        try:
            async with hub_client(self.settings, "pair") as client:
                await client.subscribe(self.topics.pair_announcements(), qos=1)
                await client.subscribe(f"{self.topics.base}/+/{Channel.AVAILABILITY.value}", qos=1)
                window = PairingWindow(v=1, open=True, until_ms=until)
                await client.publish(
                    self.topics.bridge(BridgeTopic.PAIRING), encode(window), qos=1, retain=True
                )
                await self._event(client, "pairing_opened")
                self.say(f"pairing open for {seconds:.0f} s: switch the devices on")
                try:
                    await self._listen(client, until, seen, waiting, accept_all, result, uplink)
                finally:
                    closed = PairingWindow(v=1, open=False)
                    await client.publish(
                        self.topics.bridge(BridgeTopic.PAIRING), encode(closed), qos=1, retain=True
                    )
                    await self._event(client, "pairing_closed")
                    await self._clear_credentials(client, seen, waiting)
        except aiomqtt.MqttError as e:
            where = f"{self.settings.mqtt_host}:{self.settings.mqtt_port}"
            raise PairingError(f"broker {where}: {e}") from None
        finally:
            if uplink:
                await uplink.aclose()
        self.say("pairing closed")
        return result

    async def _listen(
        self,
        client: aiomqtt.Client,
        until: int,
        seen: dict[str, str],
        waiting: set[str],
        accept_all: bool,
        result: PairingResult,
        uplink: Uplink | None,
    ) -> None:
        messages = aiter(client.messages)
        while (left := until - self.clock.now_ms()) > 0:
            message = await self._next(messages, left / 1000)
            if message is None:
                return
            topic = str(message.topic)
            payload = message.payload if isinstance(message.payload, bytes) else b""
            if topic.endswith(f"/{Channel.AVAILABILITY.value}"):
                if payload == b"online":
                    waiting.discard(topic.split("/")[-2])
                continue
            try:
                hardware_id = self.topics.parse_pair_announce(topic)
                announce = parse_model(PairAnnounce, payload)
            except ContractError as e:
                log.warning("pairing: bad announcement on %s: %s", topic, e)
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
            except (SealError, RuntimeError, OSError) as e:
                log.error("pairing %s failed: %s", announce.hardware_id, e)
                self.say(f"could not pair {announce.hardware_id}: {e}")
                result.refused.append(announce.hardware_id)
                continue
            waiting.add(device_id)
            result.accepted.append(device_id)

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
        write_security(self.settings.hub_broker_dir, after, self.settings.base_topic)
        try:
            how = await asyncio.to_thread(
                reload_broker, self.settings.hub_broker_dir, self.settings.hub_broker_reload_command
            )
        except RuntimeError:  # not paired after all: the files say so too
            write_security(self.settings.hub_broker_dir, before, self.settings.base_topic)
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

    async def _clear_credentials(
        self, client: aiomqtt.Client, seen: dict[str, str], waiting: set[str]
    ) -> None:
        """Remove the retained credentials once their devices are online (or after a grace):
        sealed, they are useless to others, but nothing should linger on the broker."""
        deadline = self.clock.monotonic() + self.pickup_grace_s
        messages = aiter(client.messages)
        while waiting and (left := deadline - self.clock.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                message = await asyncio.wait_for(anext(messages), left)
                topic = str(message.topic)
                if (
                    topic.endswith(f"/{Channel.AVAILABILITY.value}")
                    and message.payload == b"online"
                ):
                    waiting.discard(topic.split("/")[-2])
        for hardware_id in seen:
            await client.publish(self.topics.pair_credential(hardware_id), b"", qos=1, retain=True)


async def _register(uplink: Uplink | None, device_id: str, announce: PairAnnounce) -> bool:
    if uplink is None:
        log.warning("no hub token: %s not registered on the server", device_id)
        return False
    try:
        await uplink.register_device(
            device_id,
            api.DeviceRegistration(
                kind=api.DeviceKind(announce.kind), hardware_id=announce.hardware_id
            ),
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
    if accounts.device(device_id) is None:
        raise PairingError(f"{device_id} is not paired with this hub (see `carehub hub devices`)")
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
