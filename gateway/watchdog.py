"""Telling systemd how the hub is: ``READY=1`` once it is connected and its loops run,
``WATCHDOG=1`` while they are healthy (`gateway.loop_health`), ``STATUS=`` lines for
``systemctl status`` (first of all when the server refuses the hub's credential),
``STOPPING=1`` on the way out. Moves bytes only: the decisions are `LoopHealth`'s and
`PingSchedule`'s."""

from __future__ import annotations

import asyncio
import logging

from gateway.hub import Hub
from gateway.loop_health import PingSchedule
from gateway.sd_notify import Notifier

log = logging.getLogger(__name__)


def status_line(hub: Hub, problems: list[str]) -> str:
    if problems:
        return "STATUS=unhealthy, no watchdog ping: " + "; ".join(problems)
    link = "broker connected" if hub.link.connected.is_set() else "broker unreachable, retrying"
    supervisor = hub.core.supervisor
    refusal = hub.core.refusal
    refused = (
        f"SERVER REFUSES THE HUB'S CREDENTIAL (HTTP {refusal.status}), "
        f"{len(refusal.told)} alarms not delivered: re-enroll the hub; "
        if refusal.refused
        else ""
    )
    return (
        f"STATUS={refused}{link}; {supervisor.online()} devices online; "
        f"{len(supervisor.active())} device faults"
    )


async def report_to_systemd(hub: Hub, notifier: Notifier) -> None:
    """Run beside `hub.run()` until cancelled; does nothing outside systemd."""
    if not notifier.enabled:
        return
    notifier.notify("STATUS=starting: opening the store, connecting to the broker")
    while True:
        await hub.link.connected.wait()
        if hub.ready:  # every loop started too (they start within milliseconds)
            break
        await asyncio.sleep(0.05)
    notifier.notify("READY=1", status_line(hub, []))
    log.info(
        "told systemd the hub is ready%s",
        f"; watchdog ping every {notifier.watchdog_s / 2:.1f} s" if notifier.watchdog_s else "",
    )
    schedule = PingSchedule(notifier.watchdog_s) if notifier.watchdog_s else None
    last_status = ""
    while True:
        problems = hub.health.problems()
        status = status_line(hub, problems)
        if status != last_status:
            (log.error if problems else log.info)("hub %s", status.removeprefix("STATUS="))
            notifier.notify(status)
            last_status = status
        if schedule is not None and schedule.due(hub.clock.monotonic(), not problems):
            notifier.notify("WATCHDOG=1")
        await asyncio.sleep(schedule.next_check_s() if schedule else 5.0)
