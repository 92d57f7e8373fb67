"""Sealing a paired device's MQTT account to the device's ephemeral X25519 key.

Why: unpaired devices share one low-privilege pairing account, and the ACL keys a
device's credential topic on its MQTT client id (= its hardware id). A client id is not
a secret: another holder of the pairing account could connect under a victim's hardware id
and read the topic. Sealed to the key the device announced (X25519 → HKDF-SHA256 →
ChaCha20-Poly1305, the hardware id as associated data), the credential is readable only by
the holder of the private key. A forged announcement under the same hardware id is shown to
the installer, and a second key for a hardware id already announced is refused
(`gateway.pairing.decide`). Used by the hub and by device firmware (the simulator).
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from carehub.mqtt_contract import PairCredential, SealedAccount, encode

INFO = b"carehub pairing v1"


class SealError(ValueError):
    """The credential cannot be opened with this key (not ours, or tampered with)."""


def new_private_key() -> X25519PrivateKey:
    return X25519PrivateKey.generate()


def public_b64(key: X25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def _key(private: X25519PrivateKey, peer_b64: str, hardware_id: str) -> bytes:
    try:
        peer = X25519PublicKey.from_public_bytes(base64.b64decode(peer_b64, validate=True))
        shared = private.exchange(peer)
    except ValueError as e:  # wrong length, all-zero shared secret (low-order point)
        raise SealError(f"unusable X25519 key: {e}") from None
    return HKDF(hashes.SHA256(), 32, salt=hardware_id.encode(), info=INFO).derive(shared)


def seal(
    device_key_b64: str, hardware_id: str, device_id: str, account: SealedAccount
) -> PairCredential:
    """The credential message for a device that announced `device_key_b64`."""
    hub = new_private_key()
    nonce = os.urandom(12)
    box = ChaCha20Poly1305(_key(hub, device_key_b64, hardware_id))
    sealed = box.encrypt(nonce, encode(account), hardware_id.encode())
    return PairCredential(
        v=1,
        hardware_id=hardware_id,
        device_id=device_id,
        hub_key=public_b64(hub),
        nonce=base64.b64encode(nonce).decode(),
        sealed=base64.b64encode(sealed).decode(),
    )


def unseal(private: X25519PrivateKey, credential: PairCredential) -> SealedAccount:
    """The account inside a credential sealed to `private`'s public key; `SealError` if
    it was sealed to another key or altered."""
    box = ChaCha20Poly1305(_key(private, credential.hub_key, credential.hardware_id))
    try:
        plain = box.decrypt(
            base64.b64decode(credential.nonce),
            base64.b64decode(credential.sealed),
            credential.hardware_id.encode(),
        )
    except (InvalidTag, ValueError):
        raise SealError("credential not sealed to this device's key") from None
    return SealedAccount.model_validate_json(plain)
