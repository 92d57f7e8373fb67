"""Hostile MQTT input for ``carehub bench chaos --hostile``: what no well-behaved device sends.

The catalogue is plain data: `catalogue()` returns one *round* of `Hostile` messages — every
kind on every channel, for the home's real device ids and for ids the hub does not know —
built around the current time (so only the field under test is wrong). `HostilePublisher`
injects rounds throughout a run from two extra MQTT clients (one posing as the home's
devices, one as strangers) and counts what the broker took, by kind.

The malformed ones must be refused by the hub (one log line, no traceback, no alarm); the
well-formed ones with a clock ten years off (``far_future_clock``, ``far_past_clock``) must
not raise an alarm nor deafen a detector. ``skewed_press`` is a well-formed press from a real
button whose clock is far off: still an elder calling for help, so it must become exactly
one alarm. The publisher sends each once at QoS 1 (as a third-party device trusting MQTT
would; every other one twice, ``duplicate_press``) and remembers which the broker took.

Frames of the real pendants are also copied (the publisher listens to their IMU topics) and
sent again: unchanged (``duplicate_frame``), a few seconds late (``reordered_frame``), or
with their clock jumped (``far_future_clock``/``far_past_clock``), so hostile frames carry
the wearer's true posture and cannot fake or mask a fall by their content.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import paho.mqtt.client as mqtt

from carehub.mqtt_contract import Channel, Topics

KINDS = (
    "far_future_clock",
    "far_past_clock",
    "skewed_press",
    "inf_1e400",
    "nan_literal",
    "out_of_range",
    "empty_frame",
    "wrong_type",
    "deep_json",
    "huge_payload",
    "non_utf8",
    "bad_topic",
    "retained_junk",
    "duplicate_press",
    "duplicate_frame",
    "reordered_frame",
)
"""Every kind of hostile message, in report order."""

YEAR_MS = 365 * 24 * 3600 * 1000
FAR_MS = 10 * YEAR_MS
"""How far off a hostile clock is: ten years either way."""
HOSTILE_SEQ_BASE = 10**12
"""Hostile events on real devices use seqs from here: far from the simulated firmware's
(which start at the epoch second), so no hostile message can pass for a real event."""
DEEP_LEVELS = 10_000
HUGE_BYTES = 100 * 1024
"""Beyond the contract's 64 KiB limit."""
REORDER_BACK = 3
"""A reordered frame is the one sent this many frames earlier (3 s at 1 s frames)."""

Target = Literal["home", "stranger"]


@dataclass(frozen=True)
class Hostile:
    """One message to inject. ``target`` says which intruder client sends it."""

    kind: str
    topic: str
    payload: bytes
    target: Target
    qos: int = 0
    retain: bool = False
    press: tuple[str, int] | None = None
    """(device_id, seq) of a ``skewed_press``: the one alarm it must become."""


@dataclass(frozen=True)
class Devices:
    """Who the messages pretend to be."""

    base_topic: str
    buttons: Sequence[str]
    pendants: Sequence[str]
    strangers: Sequence[str] = ("ghost-1", "btn-h999-0", "pend-h999-0")


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _upright(n: int = 50) -> list[list[float]]:
    return [[0.0, 1.0, 0.0]] * n


def _imu(seq: int, t0: int, acc: Any = None) -> dict[str, Any]:
    return {"v": 1, "seq": seq, "t0": t0, "hz": 50.0, "acc": _upright() if acc is None else acc}


def _vitals(seq: int, ts: int, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "seq": seq, "ts": ts, "hr": 72.0, "spo2": 97.0, "rr": 16.0, **fields}


def _status(seq: int, ts: int, **fields: Any) -> dict[str, Any]:
    return {"v": 1, "seq": seq, "ts": ts, "battery": 80.0, **fields}


def _press(seq: int, ts: Any) -> dict[str, Any]:
    return {"v": 1, "seq": seq, "ts": ts, "action": "press"}


def _raw(doc: dict[str, Any], key: str, literal: str) -> bytes:
    """`doc` as JSON with the value of `key` replaced by a literal JSON cannot hold (NaN,
    1e400): what a device's hand-rolled printf would produce."""
    marker = "__HOSTILE__"
    return _json({**doc, key: marker}).replace(f'"{marker}"'.encode(), literal.encode())


def _deep(levels: int) -> tuple[bytes, bytes]:
    """Arrays and objects nested `levels` deep (both under 64 KiB: only depth is wrong)."""
    return b"[" * levels + b"]" * levels, b'{"a":' * levels + b"1" + b"}" * levels


def catalogue(devices: Devices, now_ms: int, seq: Iterator[int], round_no: int) -> list[Hostile]:
    """One round of hostile messages for these devices, stamped around `now_ms` (epoch ms).

    Real ids rotate over the home's buttons and pendants from round to round; `seq` hands out
    fresh hostile sequence numbers."""
    topics = Topics(devices.base_topic)
    out: list[Hostile] = []
    button = devices.buttons[round_no % len(devices.buttons)] if devices.buttons else None
    pendant = devices.pendants[round_no % len(devices.pendants)] if devices.pendants else None
    stranger = devices.strangers[round_no % len(devices.strangers)]

    def add(kind: str, device: str, channel: Channel, payload: bytes, **kw: Any) -> None:
        target: Target = "stranger" if device in devices.strangers else "home"
        out.append(Hostile(kind, topics.device(device, channel), payload, target, **kw))

    ids = [d for d in (button, pendant, stranger) if d is not None]
    for device in ids:
        # clocks far off on the timestamped channels (a real pendant's frames come as copies)
        for kind, ts in (
            ("far_future_clock", now_ms + FAR_MS),
            ("far_past_clock", now_ms - FAR_MS),
        ):
            add(kind, device, Channel.VITALS, _json(_vitals(next(seq), ts)))
            add(kind, device, Channel.STATUS, _json(_status(next(seq), ts)))
            if device == stranger:
                add(kind, device, Channel.IMU, _json(_imu(next(seq), ts)))
                add(kind, device, Channel.BUTTON, _json(_press(next(seq), ts)), qos=1)
        # numbers JSON cannot hold
        add("inf_1e400", device, Channel.VITALS, _raw(_vitals(next(seq), now_ms), "hr", "1e400"))
        add(
            "inf_1e400",
            device,
            Channel.STATUS,
            _raw(_status(next(seq), now_ms), "battery", "1e400"),
        )
        add("inf_1e400", device, Channel.IMU, _raw(_imu(next(seq), now_ms), "hz", "1e400"))
        add("inf_1e400", device, Channel.BUTTON, _raw(_press(next(seq), 0), "ts", "1e400"), qos=1)
        add("nan_literal", device, Channel.VITALS, _raw(_vitals(next(seq), now_ms), "spo2", "NaN"))
        add("nan_literal", device, Channel.IMU, _raw(_imu(next(seq), now_ms), "acc", "[[NaN,1,0]]"))
        add(
            "nan_literal",
            device,
            Channel.STATUS,
            _raw(_status(next(seq), now_ms), "rssi", "-Infinity"),
        )
        # physically impossible values
        for name, value in (("hr", -5), ("spo2", 500), ("temp", -273), ("rr", 1e6), ("sbp", -1)):
            add(
                "out_of_range",
                device,
                Channel.VITALS,
                _json(_vitals(next(seq), now_ms, **{name: value})),
            )
        add("out_of_range", device, Channel.STATUS, _json(_status(next(seq), now_ms, battery=500)))
        add("out_of_range", device, Channel.IMU, _json({**_imu(next(seq), now_ms), "hz": 0}))
        add("out_of_range", device, Channel.IMU, _json(_imu(next(seq), now_ms, [[1e6, 1, 0]] * 50)))
        add("empty_frame", device, Channel.IMU, _json(_imu(next(seq), now_ms, [])))
        add("empty_frame", device, Channel.IMU, _json(_imu(next(seq), now_ms, [[]] * 50)))
        # wrong types (each accepted by a lax parser as something else)
        add("wrong_type", device, Channel.BUTTON, _json(_press(7, now_ms) | {"seq": "7"}), qos=1)
        add("wrong_type", device, Channel.BUTTON, _json(_press(1, now_ms) | {"seq": True}), qos=1)
        add(
            "wrong_type",
            device,
            Channel.BUTTON,
            _json(_press(next(seq), now_ms) | {"v": 1.0}),
            qos=1,
        )
        add("wrong_type", device, Channel.IMU, _json(_imu(next(seq), now_ms) | {"seq": "7"}))
        add("wrong_type", device, Channel.VITALS, _json(_vitals(next(seq), now_ms, hr="72")))
        add("wrong_type", device, Channel.STATUS, _json(_status(next(seq), now_ms, battery=True)))
        # depth, size and encoding
        arrays, objects = _deep(DEEP_LEVELS)
        for channel in (Channel.BUTTON, Channel.IMU, Channel.VITALS, Channel.STATUS):
            add("deep_json", device, channel, arrays if channel is Channel.IMU else objects)
            add("non_utf8", device, channel, b'{"v":1,"seq":\xff\xfe,"ts":1}')
        deep_field = _raw(_imu(next(seq), now_ms), "acc", arrays.decode())
        add("deep_json", device, Channel.IMU, deep_field)
        add("non_utf8", device, Channel.AVAILABILITY, b"\xff\xfeonline")
        big = _imu(next(seq), now_ms, [[0.0123, 1.0012, 0.0045]] * (HUGE_BYTES // 24))
        add("huge_payload", device, Channel.IMU, _json(big))
        add(
            "huge_payload",
            device,
            Channel.STATUS,
            _json(_status(next(seq), now_ms, firmware="x" * HUGE_BYTES)),
        )
        add("huge_payload", device, Channel.BUTTON, b"x" * (1024 * 1024), qos=1)
        # junk kept by the broker and handed to every hub that (re)subscribes
        for junk in (b"maybe", b'{"v":1,"state":"online"}', b"online\x00", b"\xff" * 8):
            add("retained_junk", device, Channel.AVAILABILITY, junk, qos=1, retain=True)

    # a real button whose clock is far off still calls for help: exactly one alarm each
    if button is not None:
        for ts in (now_ms + FAR_MS, max(0, now_ms - FAR_MS)):
            s = next(seq)
            add(
                "skewed_press",
                button,
                Channel.BUTTON,
                _json(_press(s, ts)),
                qos=1,
                press=(button, s),
            )

    # topics no device may use (valid payloads, so only the topic is wrong)
    base = devices.base_topic
    valid = _json(_press(next(seq), now_ms))
    for topic in (
        f"{base}/{'x' * 80}/button",  # device id too long
        f"{base}/bad id!/button",
        f"{base}/{button or stranger}\u200b/button",  # a real id with a zero-width space
        f"{base}/über/imu",
        f"{base}/{stranger}/buttons",
        f"{base}/{stranger}/ack",
        f"{base}/{button or stranger}/button/extra",
        f"{base}//button",
        f"/{base}/{button or stranger}/button",
        f"{base}2/{button or stranger}/button",
    ):
        out.append(Hostile("bad_topic", topic, valid, "stranger", qos=1))
    return out


def interleave(messages: list[Hostile], rng: random.Random) -> list[Hostile]:
    """The messages in random order within each kind, kinds taken in turn: the first
    len(KINDS)-odd messages of a round already cover every kind (short runs see them all)."""
    by_kind: dict[str, list[Hostile]] = {}
    for h in messages:
        by_kind.setdefault(h.kind, []).append(h)
    for group in by_kind.values():
        rng.shuffle(group)
    out: list[Hostile] = []
    while by_kind:
        for kind in [k for k in KINDS if k in by_kind]:
            out.append(by_kind[kind].pop())
            if not by_kind[kind]:
                del by_kind[kind]
    return out


@dataclass
class _Intruder:
    """One extra MQTT client: its connection state and what it failed to send."""

    client: mqtt.Client
    connected: threading.Event = field(default_factory=threading.Event)


class HostilePublisher:
    """Injects `catalogue()` rounds at `rate_per_s` messages/s until stopped, plus copies of
    the real pendants' frames; `counts` says what the broker took, by kind.

    Messages are skipped (not counted) while an intruder is disconnected, e.g. during a
    broker restart. Use as a context manager."""

    def __init__(
        self,
        host: str,
        port: int,
        devices: Devices,
        rate_per_s: float = 4.0,
        frame_copies_per_s: float = 1.0,
        seed: int = 1,
    ) -> None:
        self.devices = devices
        self.rate_per_s = rate_per_s
        self.frame_copies_per_s = frame_copies_per_s
        self.counts: Counter[str] = Counter()
        self.skipped = 0
        self._rng = random.Random(seed)
        self._seq = iter(range(HOSTILE_SEQ_BASE, 2**62))
        self._presses: list[tuple[tuple[str, int], mqtt.MQTTMessageInfo]] = []
        self._frames: dict[str, deque[bytes]] = {p: deque(maxlen=8) for p in devices.pendants}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="hostile")
        self._topics = Topics(devices.base_topic)
        self._intruders: dict[Target, _Intruder] = {
            t: self._intruder(f"intruder-{t}-{seed}", host, port) for t in ("home", "stranger")
        }
        home = self._intruders["home"].client
        home.on_message = self._on_frame

    def _intruder(self, client_id: str, host: str, port: int) -> _Intruder:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True
        )
        client.reconnect_delay_set(1, 2)
        client.max_queued_messages_set(1000)
        intruder = _Intruder(client)

        def on_connect(c: mqtt.Client, _u: object, _f: object, _r: object, _p: object) -> None:
            for pendant in self.devices.pendants:
                if client_id.startswith("intruder-home"):
                    c.subscribe(self._topics.device(pendant, Channel.IMU), qos=0)
            intruder.connected.set()

        def on_disconnect(*_: object) -> None:
            intruder.connected.clear()

        client.on_connect = on_connect
        client.on_disconnect = on_disconnect
        client.connect_async(host, port, keepalive=10)
        return intruder

    def __enter__(self) -> HostilePublisher:
        for intruder in self._intruders.values():
            intruder.client.loop_start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        for intruder in self._intruders.values():
            intruder.client.disconnect()
            intruder.client.loop_stop()

    def stop_injecting(self, timeout_s: float = 10.0) -> None:
        """Stop sending, and give pending QoS-1 publishes up to `timeout_s` to be acknowledged
        by the broker (the clients stay connected)."""
        self._stop.set()
        self._thread.join(10)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if all(info.is_published() for _, info in self._presses):
                    return
            time.sleep(0.1)

    def skewed_presses(self) -> list[tuple[str, int]]:
        """(device_id, seq) of every skewed press the broker acknowledged (PUBACK)."""
        with self._lock:
            return [key for key, info in self._presses if info.is_published()]

    # -------------------------------------------------------------- sending

    def _on_frame(self, _c: mqtt.Client, _u: object, message: mqtt.MQTTMessage) -> None:
        device_id = message.topic.split("/")[-2]
        with self._lock:
            if device_id in self._frames:
                self._frames[device_id].append(bytes(message.payload))

    def _send(self, h: Hostile) -> bool:
        intruder = self._intruders[h.target]
        if not intruder.connected.is_set():
            self.skipped += 1
            return False
        try:
            info = intruder.client.publish(h.topic, h.payload, qos=h.qos, retain=h.retain)
        except ValueError:  # a topic paho itself refuses: nothing reached the broker
            self.skipped += 1
            return False
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.skipped += 1
            return False
        with self._lock:
            self.counts[h.kind] += 1
            if h.press is not None:
                self._presses.append((h.press, info))
        return True

    def _frame_copies(self, now_ms: int) -> list[Hostile]:
        """Copies of a real pendant's recent frames: repeated, late, or with the clock jumped."""
        with self._lock:
            recent = {p: list(q) for p, q in self._frames.items() if q}
        out: list[Hostile] = []
        for pendant, frames in recent.items():
            topic = self._topics.device(pendant, Channel.IMU)
            out.append(Hostile("duplicate_frame", topic, frames[-1], "home"))
            if len(frames) > REORDER_BACK:
                out.append(Hostile("reordered_frame", topic, frames[-1 - REORDER_BACK], "home"))
            try:
                frame = json.loads(frames[-1])
            except ValueError:
                continue
            for kind, t0 in (
                ("far_future_clock", now_ms + FAR_MS),
                ("far_past_clock", now_ms - FAR_MS),
            ):
                jumped = {**frame, "t0": t0, "seq": next(self._seq)}
                out.append(Hostile(kind, topic, _json(jumped), "home"))
        return out

    def _run(self) -> None:
        round_no = presses = 0
        queue: list[Hostile] = []
        copies: list[Hostile] = []
        next_msg = next_copy = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_msg:
                if not queue:
                    queue = interleave(
                        catalogue(self.devices, time.time_ns() // 1_000_000, self._seq, round_no),
                        self._rng,
                    )
                    round_no += 1
                h = queue.pop(0)
                if self._send(h) and h.press is not None:
                    presses += 1
                    if presses % 2 == 1:  # every other skewed press goes twice
                        self._send(Hostile("duplicate_press", h.topic, h.payload, h.target, 1))
                next_msg += 1.0 / self.rate_per_s
            if self.frame_copies_per_s > 0 and now >= next_copy:
                if not copies:
                    copies = self._frame_copies(time.time_ns() // 1_000_000)
                    self._rng.shuffle(copies)
                if copies:
                    self._send(copies.pop())
                next_copy += 1.0 / self.frame_copies_per_s
            self._stop.wait(max(0.0, min(next_msg, next_copy) - time.monotonic()))
