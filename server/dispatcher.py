"""The dispatch loop: every received alarm gets its on-duty doctor texted, durably.

Alarms are committed before the hub's upload is acknowledged; this loop picks them up from
the database (woken at once by `kick`, and by a periodic sweep), so a server killed at any
point dispatches what is left when it starts again. SMS delivery is at-least-once: a crash
between Twilio accepting a message and the database recording it sends it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from carehub.clock import Clock
from server.change_signal import ChangeSignal
from server.dispatch_policy import DoctorOnDuty, NoDoctorAvailable, choose_doctor
from server.notifier import Notifier, NotifierError
from server.sms_text import AlarmSummary, compose
from server.store import Claim, PendingDispatch, SentNotification, ServerStore

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        store: ServerStore,
        notifier: Notifier,
        clock: Clock,
        changes: ChangeSignal,
        sweep_s: float = 2.0,
        batch: int = 50,
        concurrent_sms: int = 8,
    ) -> None:
        self._store = store
        self._changes = changes
        self._notifier = notifier
        self._clock = clock
        self._sweep_s = sweep_s
        self._wake = asyncio.Event()
        self._batch = batch
        self._sending = asyncio.Semaphore(concurrent_sms)
        self._retry_at: dict[str, float] = {}  # alarm id → monotonic time of the next try

    def kick(self) -> None:
        """A new alarm was stored: dispatch now rather than at the next sweep."""
        self._wake.set()

    async def run(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.dispatch_pending()
            except Exception:
                log.exception("dispatch sweep failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._sweep_s)

    async def dispatch_pending(self) -> int:
        """Dispatch every alarm waiting for a doctor; returns how many were dispatched.

        Alarms are handled in batches with a group commit: one transaction claims the
        notifications of the whole batch, the SMS go out concurrently, one transaction
        records them. Two fsyncs per batch instead of two per alarm keep the latency flat
        when many alarms arrive at once. An alarm whose SMS failed waits `sweep_s` before
        it is tried again, however often new alarms wake the dispatcher.
        """
        done, tried = 0, set[str]()
        while True:
            now = self._clock.monotonic()
            skip = tried | {a for a, t in self._retry_at.items() if t > now}
            pending = await self._store.pending_dispatches(limit=self._batch + len(skip))
            batch = [a for a in pending if a.alarm_id not in skip][: self._batch]
            if not batch:
                return done
            ids = {a.alarm_id for a in batch}
            tried |= ids
            sent = await self._dispatch_batch(batch)
            retry_at = self._clock.monotonic() + self._sweep_s
            for alarm_id in ids:
                if alarm_id in sent:
                    self._retry_at.pop(alarm_id, None)
                else:
                    self._retry_at[alarm_id] = retry_at
            done += len(sent)

    async def _dispatch_batch(self, batch: list[PendingDispatch]) -> set[str]:
        """Claim, send and record one batch; returns the ids of the alarms dispatched."""
        teams: dict[str, list[DoctorOnDuty]] = {}
        plans: list[tuple[PendingDispatch, DoctorOnDuty, Claim]] = []
        for alarm in batch:
            if alarm.team_id not in teams:
                teams[alarm.team_id] = await self._store.team(alarm.team_id)
            try:
                doctor = choose_doctor(teams[alarm.team_id])
            except NoDoctorAvailable as e:
                log.error("alarm %s: %s; the dispatcher console must take it", alarm.alarm_id, e)
                continue
            body = compose(
                AlarmSummary(
                    alarm_ref=alarm.alarm_id[-6:].upper(),
                    elder_name=alarm.elder_name,
                    short_address=alarm.short_address,
                    kind=alarm.kind,
                    severity=alarm.severity,
                ),
                doctor.language,
            )
            plans.append(
                (alarm, doctor, Claim(alarm.alarm_id, alarm.hub_id, doctor.id, "dispatch", body))
            )
        if not plans:
            return set()
        nids = await self._store.claim_notifications([c for _, _, c in plans], self._clock.now_ms())
        to_send = [(a, d, c, nid) for (a, d, c), nid in zip(plans, nids, strict=True) if nid]
        refs = await asyncio.gather(*(self._send(d, c, nid) for _, d, c, nid in to_send))
        sent = [
            SentNotification(a.alarm_id, a.hub_id, d.id, nid, ref)
            for (a, d, _, nid), ref in zip(to_send, refs, strict=True)
            if ref is not None
        ]
        if sent:
            await self._store.mark_dispatched_many(sent, self._clock.now_ms())
        for n in sent:
            await self._changes.notify(n.hub_id)
            log.info(
                "alarm %s dispatched to doctor %s (%s)", n.alarm_id, n.doctor_id, n.provider_ref
            )
        return {n.alarm_id for n in sent}

    async def _send(self, doctor: DoctorOnDuty, claim: Claim, nid: str) -> str | None:
        """One SMS; a failure is recorded and the alarm retried at the next sweep."""
        async with self._sending:
            try:
                return await self._notifier.send_sms(doctor.phone, claim.body)
            except NotifierError as e:
                log.warning("alarm %s: SMS to doctor %s failed: %s", claim.alarm_id, doctor.id, e)
                await self._store.notification_failed(nid, str(e))
                return None
