"""The hub's credential file, written by `carehub hub enroll`: the server it enrolled with,
its hub id and bearer token.

The file is created with mode 0600 from the start (``os.open`` with the mode, then an atomic
rename), so the token is never readable by another user, not even for a moment; a hub that
enrolls again replaces it whole.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from pydantic import SecretStr

from carehub.settings import HubSettings

MODE = 0o600


class CredentialError(ValueError):
    """The credential file is missing or unreadable; the message says what to do."""


@dataclass(frozen=True)
class HubCredential:
    server_url: str
    hub_id: str
    household_id: str
    token: str


def write_credential(path: Path, credential: HubCredential) -> None:
    """Write the file readable by its owner only, replacing any previous one atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, MODE)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(credential), f, indent=2)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_credential(path: Path) -> HubCredential:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return HubCredential(
            server_url=str(data["server_url"]),
            hub_id=str(data["hub_id"]),
            household_id=str(data["household_id"]),
            token=str(data["token"]),
        )
    except FileNotFoundError:
        raise CredentialError(
            f"no credential file {path}: enroll the hub first (carehub hub enroll --server URL"
            " --code CODE) or set CAREHUB_HUB_TOKEN"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CredentialError(f"credential file {path} is unreadable ({e}): enroll again") from None


def with_credential(settings: HubSettings) -> HubSettings:
    """The settings with the token (and, unless set explicitly, the server URL) from the
    credential file when ``CAREHUB_HUB_TOKEN`` is not set. Raises `CredentialError`."""
    if settings.hub_token.get_secret_value():
        return settings
    credential = read_credential(settings.hub_credential_file)
    update: dict[str, object] = {"hub_token": SecretStr(credential.token)}
    if "server_url" not in settings.model_fields_set:
        update["server_url"] = credential.server_url
    return settings.model_copy(update=update)


def with_credential_if_enrolled(settings: HubSettings) -> HubSettings:
    """`with_credential`, for the installer's commands that also work before enrollment
    (pairing, self-test without the server): the settings unchanged when the hub has no
    credential yet."""
    try:
        return with_credential(settings)
    except CredentialError:
        return settings
