"""The dispatch loop: every received alarm gets its on-duty doctor texted, durably.

Alarms are committed before the hub's upload is acknowledged; this loop picks them up from
the database (woken at once by `kick`, and by a periodic sweep), so a server killed at any
point dispatches what is left when it starts again. SMS delivery is at-least-once: a crash
between Twilio accepting a message and the database recording it sends it again.
"""

from __future__ import annotations

import asyncio
import logging

from carehub.clock import Clock
from server.change_signal import ChangeSignal
from server.dispatch_policy import NoDoctorAvailable, choose_doctor
from server.notifier import Notifier, NotifierError
from server.sms_text import AlarmSummary, compose
from server.store import PendingDispatch, ServerStore

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(
        self,
        store: ServerStore,
        notifier: Notifier,
        clock: Clock,
        changes: ChangeSignal,
        sweep_s: float = 2.0,
    ) -> None:
        self._store = store
        self._changes = changes
        self._notifier = notifier
        self._clock = clock
        self._sweep_s = sweep_s
        self._wake = asyncio.Event()

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
            try:
                await asyncio.wait_for(self._wake.wait(), self._sweep_s)
            except TimeoutError:
                pass

    async def dispatch_pending(self) -> int:
        """Dispatch every alarm waiting for a doctor; returns how many were dispatched."""
        done = 0
        for alarm in await self._store.pending_dispatches():
            if await self._dispatch(alarm):
                done += 1
        return done

    async def _dispatch(self, alarm: PendingDispatch) -> bool:
        team = await self._store.team(alarm.team_id)
        try:
            doctor = choose_doctor(team)
        except NoDoctorAvailable as e:
            log.error("alarm %s: %s; the dispatcher console must take it", alarm.alarm_id, e)
            return False
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
        now = self._clock.now_ms()
        nid = await self._store.claim_notification(
            alarm.alarm_id, alarm.hub_id, doctor.id, "dispatch", body, now
        )
        if nid is None:
            return False
        try:
            ref = await self._notifier.send_sms(doctor.phone, body)
        except NotifierError as e:
            log.warning("alarm %s: SMS to doctor %s failed: %s", alarm.alarm_id, doctor.id, e)
            await self._store.notification_failed(nid, str(e))
            return False
        await self._store.mark_dispatched(
            alarm.alarm_id, alarm.hub_id, doctor.id, nid, ref, self._clock.now_ms()
        )
        await self._changes.notify(alarm.hub_id)
        log.info("alarm %s dispatched to doctor %s (%s)", alarm.alarm_id, doctor.id, ref)
        return True
