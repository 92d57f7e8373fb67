"""A fall pendant: streams accelerometer (and gyroscope) frames of one second, and can
replay a recorded signal as if it were being worn.

While it cannot publish (no connection, or the client refuses) it keeps its frames in a
:class:`~firmware_sim.replay.ReplayBuffer` and, on reconnect, republishes them marked
``replayed``, in order, before its live frames — the contract's duty for pendants, so a fall
during an outage is detected late rather than never."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from carehub.mqtt_contract import REPLAY_BUFFER_S, Channel, DeviceStatus, ImuFrame
from firmware_sim.device import SimDevice
from firmware_sim.replay import IN_DOUBT_MS, ReplayBuffer

FIRMWARE = "sim-pendant/0.1"


def still_standing(n: int, rng: np.random.Generator) -> np.ndarray:
    """n samples of an upright, resting wearer: 1 g on Y plus sensor noise (g)."""
    acc = np.zeros((n, 3))
    acc[:, 1] = 1.0
    return acc + rng.normal(0, 0.01, size=(n, 3))


def synthetic_fall(
    hz: float, rng: np.random.Generator, lying_s: float = 12.0, upright_s: float = 12.0
) -> np.ndarray:
    """A textbook fall (g): upright, 0.4 s of free fall, a 4-6 g impact with a rebound, then
    lying still with gravity on another axis. For tests and benches without a dataset.

    ``upright_s`` of standing come first: an elder still lying from an earlier fall gets up
    before falling again (the detector rightly ignores a "fall" back into a posture held a
    few seconds before — that is rolling over)."""
    n_up, n_free, n_lie = int(upright_s * hz), int(0.4 * hz), int(lying_s * hz)
    up = still_standing(n_up, rng)
    free = np.linspace(1.0, 0.15, n_free)[:, None] * np.array([0.0, 1.0, 0.0])
    peak = rng.uniform(4.0, 6.0)
    n_imp = max(3, int(0.1 * hz))
    impact = np.zeros((n_imp, 3))
    impact[:, 0] = peak * np.hanning(n_imp + 2)[1:-1]
    impact[:, 1] = 0.5
    rebound = np.tile([0.6, 0.3, 0.8], (max(1, int(0.3 * hz)), 1))
    lie = np.zeros((n_lie, 3))
    lie[:, 2] = 1.0
    lie += rng.normal(0, 0.01, size=lie.shape)
    return np.vstack([up, free, impact, rebound, lie])


class FallPendant(SimDevice):
    def __init__(
        self,
        *args: Any,
        hz: float = 50.0,
        status_every_s: float = 30.0,
        time_scale: float = 1.0,
        replay_keep_s: float = REPLAY_BUFFER_S,
        in_doubt_ms: float = IN_DOUBT_MS,
        **kwargs: Any,
    ) -> None:
        """``time_scale`` > 1 streams faster than real time (tests); stream timestamps still
        advance by the sample clock, as a pendant's firmware stamps them. ``replay_keep_s``
        and ``in_doubt_ms`` size the outage buffer (stream time)."""
        super().__init__(*args, **kwargs)
        self.hz = hz
        self.time_scale = time_scale
        self.status_every_s = status_every_s
        self._rng = np.random.default_rng(abs(hash(self.device_id)) % 2**32)
        self._queue: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"{self.device_id}-imu")
        self.frames_sent = 0
        """Frames the client accepted, live or replayed."""
        self.frames_replayed = 0
        self.backlog = ReplayBuffer(replay_keep_s, in_doubt_ms)
        self._backlog_lock = threading.Lock()
        self._rest_g = np.array([0.0, 1.0, 0.0])  # posture held between recordings

    def start(self) -> FallPendant:
        super().start()
        self._thread.start()
        return self

    def replay(self, acc_g: np.ndarray, gyr_dps: np.ndarray | None = None) -> float:
        """Queue a recording (at `hz`) to stream next, in real time; returns its duration, s."""
        n = int(self.hz)
        with self._lock:
            for i in range(0, len(acc_g), n):
                self._queue.append(
                    (acc_g[i : i + n], None if gyr_dps is None else gyr_dps[i : i + n])
                )
        return len(acc_g) / self.hz

    def pending_frames(self) -> int:
        """Recorded frames not yet streamed (not the outage backlog: see ``backlog.owed``)."""
        with self._lock:
            return len(self._queue)

    def frame(self, acc_g: np.ndarray, gyr_dps: np.ndarray | None, t0_ms: int) -> ImuFrame:
        """The contract frame for samples starting at ``t0_ms`` (the next ``seq``)."""
        return ImuFrame(
            v=1,
            seq=self.next_seq(),
            t0=t0_ms,
            hz=self.hz,
            acc=np.round(acc_g, 4).tolist(),
            gyr=None if gyr_dps is None else np.round(gyr_dps, 3).tolist(),
        )

    def send_frame(self, frame: ImuFrame) -> bool:
        """Publish a live frame, or keep it if it cannot go now or older frames are owed
        (order is kept). True if it was handed to the client."""
        with self._backlog_lock:
            if not self.backlog.owed and self.try_publish(Channel.IMU, frame):
                self.backlog.sent(frame)
                self.frames_sent += 1
                return True
            self.backlog.hold(frame)
            return False

    def link_up(self) -> None:
        """Reconnected: replay what is owed, in order, before any live frame."""
        with self._backlog_lock:
            frames = self.backlog.replay()
            for i, frame in enumerate(frames):
                if not self.try_publish(Channel.IMU, frame):
                    self.backlog.put_back(frames[i:])  # lost the link again mid-replay
                    return
                self.backlog.sent(frame)
                self.frames_sent += 1
                self.frames_replayed += 1

    def link_down(self) -> None:
        with self._backlog_lock:
            self.backlog.link_lost()

    def _run(self) -> None:
        n = int(self.hz)
        next_status = time.monotonic()
        t_next = time.monotonic()
        stream_ms = float(time.time_ns() // 1_000_000)  # the sample clock
        while not self._stop.is_set():
            t_next += n / self.hz / self.time_scale
            with self._lock:
                if self._queue:
                    acc, gyr = self._queue.pop(0)
                    self._rest_g = np.asarray(acc[-min(10, len(acc)) :]).mean(axis=0)
                else:  # nothing to replay: the wearer stays as the last recording left them
                    acc = self._rest_g + self._rng.normal(0, 0.01, size=(n, 3))
                    gyr = None
            t0 = int(stream_ms)
            stream_ms += len(acc) * 1000.0 / self.hz
            self.send_frame(self.frame(acc, gyr, t0))
            if self.connected.is_set() and time.monotonic() >= next_status:
                self.publish(
                    Channel.STATUS,
                    DeviceStatus(
                        v=1, seq=self.next_seq(), ts=t0, battery=80.0, firmware=FIRMWARE, rssi=-55.0
                    ),
                )
                next_status = time.monotonic() + self.status_every_s
            self._stop.wait(max(0.0, t_next - time.monotonic()))
