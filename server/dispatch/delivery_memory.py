"""What this process knows of its messages' delivery, so a status callback that changes
nothing is answered without the database.

Twilio calls back three times per message (``queued``, ``sent``, ``delivered``); the first
two come after the process that sent the message recorded it as sent, and change nothing.
A message's status only rises (`server.dispatch.queue.STATUS_RANK`), so a rank this process
saw committed is a floor of the stored one: a callback ranked at or below it is out of date
wherever the row is now. A callback for a message this process does not know (sent by
another process, or forgotten) is decided by the database, as before.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence

KEPT = 20_000
"""Messages remembered: a few minutes of a storm's texts; older ones are read again."""


class DeliveryMemory:
    """The lowest status rank each recent message is known to have reached (committed)."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._ranks: OrderedDict[str, int] = OrderedDict()

    def note(self, ids: Iterable[str], rank: int) -> None:
        """These messages' statuses reached `rank` in a committed transaction."""
        for nid in ids:
            if self._ranks.get(nid, -1) < rank:
                self._ranks[nid] = rank
            self._ranks.move_to_end(nid)
        while len(self._ranks) > self._kept:
            self._ranks.popitem(last=False)

    def changes_nothing(self, ids: Sequence[str], rank: int) -> bool:
        """True when every message is known at `rank` or above: a callback of that rank
        arrived out of date. False when any is unknown here (ask the database)."""
        return bool(ids) and all(self._ranks.get(nid, -1) >= rank for nid in ids)

    def all_known(self, ids: Sequence[str]) -> bool:
        """True when every message is known here (so a callback ranked above what is known
        very likely moves it: worth the write without a read first)."""
        return bool(ids) and all(nid in self._ranks for nid in ids)
