"""Which household a device id belongs to, and what that means for an alarm or a pairing:
plain decisions, no I/O (`server.store`, `server.household_store` read the rows).

A device id belongs to one household (`schema.device_homes`). An alarm is never refused
for its device: a device the uploading hub's household does not own is flagged
(`DeviceFlag`) and the alarm stored and dispatched for the hub's household. Pairing another
household's device is refused: only its own home's hub or an admin can release it.
"""

from __future__ import annotations

import enum

from carehub.api_contract import DeviceFlag


def alarm_flag(owner_household: str | None, hub_household: str | None) -> DeviceFlag | None:
    """The flag of an alarm whose device is owned by `owner_household` (None: by nobody),
    uploaded by a hub of `hub_household`; None when the device is the home's own."""
    if owner_household is None:
        return DeviceFlag.UNKNOWN
    if owner_household != hub_household:
        return DeviceFlag.FOREIGN
    return None


class Claim(enum.StrEnum):
    """What a hub's PUT of a device id does."""

    NEW = "new"  # nobody had it: paired with this hub, owned by its household
    SAME = "same"  # already paired with this hub (its kind is updated)
    MOVED = "moved"  # the household's device, paired with another of its hubs (re-enrolled)
    REFUSED = "refused"  # another household's device: an admin must release it first


def claim(
    owner_household: str | None, paired_hub: str | None, hub_id: str, hub_household: str | None
) -> Claim:
    """A hub of `hub_household` pairs a device owned by `owner_household` (None: nobody)
    and paired with `paired_hub` (None: no hub)."""
    if paired_hub == hub_id:
        return Claim.SAME
    if owner_household is not None and owner_household != hub_household:
        return Claim.REFUSED
    if paired_hub is not None and owner_household is None:
        return Claim.REFUSED  # paired with a hub of no household: nobody here can tell
    return Claim.MOVED if paired_hub is not None else Claim.NEW
