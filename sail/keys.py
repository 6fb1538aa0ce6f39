"""The Sail's keys: ed25519 nkeys (NATS's encoding of public keys and seeds).

The coordinator's own identities (the processes, the auth callout, the system user and
the account key that signs what the callout answers) are derived from one secret,
``SAIL_SECRET``, so that a deployment keeps one secret and the NATS server's
configuration holds only public keys. Islands make their own key on first start and
keep its seed; the coordinator only ever sees their public key.

Imports no Django: the launcher renders the server configuration before Django starts.
"""

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass

import nacl.exceptions
import nacl.signing
import nkeys

USER = nkeys.PREFIX_BYTE_USER
ACCOUNT = nkeys.PREFIX_BYTE_ACCOUNT
SERVER = nkeys.PREFIX_BYTE_SERVER


def derive_seed(secret: str, role: str, prefix: int = USER) -> str:
    """A stable seed for ``role``: the same secret always gives the same keys."""
    return seed_of(hashlib.sha256(f"archipelago-sail:{role}:{secret}".encode()).digest(), prefix)


def route_password(secret: str) -> str:
    """The password of a cluster's routes (sail.server_config): lets a server join the
    cluster, nothing else; derived so that a deployment keeps one secret."""
    return hashlib.sha256(f"archipelago-sail:routes:{secret}".encode()).hexdigest()


def new_seed(prefix: int = USER) -> str:
    """A fresh seed (nkeys has no generator of its own)."""
    return seed_of(os.urandom(32), prefix)


def seed_of(raw: bytes, prefix: int = USER) -> str:
    """The seed of the 32 bytes ``raw``."""
    return nkeys.encode_seed(raw, prefix).decode()


def public_key(seed: str) -> str:
    return nkeys.from_seed(bytearray(seed.encode())).public_key.decode()


def sign(seed: str, data: bytes) -> bytes:
    return nkeys.from_seed(bytearray(seed.encode())).sign(data)


def raw_public_key(public: str, prefix: int | None = None) -> bytes:
    """The 32 bytes of an encoded public key (``U…``, ``A…``, ``N…``), its checksum and
    type checked; ValueError otherwise. (nkeys cannot load a public key by itself.)"""
    try:
        raw = base64.b32decode(public + "=" * (-len(public) % 8))
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError("not a public nkey") from exc
    if len(raw) != 35:
        raise ValueError("not a public nkey")
    body, checksum = raw[:-2], raw[-2:]
    if nkeys.crc16(bytearray(body)).to_bytes(2, "little") != checksum:
        raise ValueError("the public nkey's checksum is wrong")
    if prefix is not None and body[0] != prefix:
        raise ValueError("not the expected kind of public nkey")
    return bytes(body[1:])


def is_user_key(text: object) -> bool:
    """Whether ``text`` is a user's public nkey (``U…``, 56 characters)."""
    if not isinstance(text, str) or len(text) != 56:
        return False
    try:
        raw_public_key(text, USER)
    except ValueError:
        return False
    return True


def verify(public: str, data: bytes, signature: bytes, prefix: int | None = None) -> bool:
    try:
        nacl.signing.VerifyKey(raw_public_key(public, prefix)).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, ValueError):
        return False
    return True


def verify_nonce(public: str, nonce: str, signature: str) -> bool:
    """The client's signature of the server's nonce (nats-py sends standard base64, Go
    clients URL-safe base64 without padding: both are accepted)."""
    if not (public and nonce and signature):
        return False
    text = signature.replace("+", "-").replace("/", "_").rstrip("=")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return False
    return verify(public, nonce.encode(), raw, USER)


@dataclass(frozen=True)
class CoordinatorKeys:
    """The coordinator's identities on the Sail, derived from ``SAIL_SECRET``."""

    coordinator: str  # the web, worker, beat and bridge processes (static user, account APP)
    callout: str  # the auth callout service (static user: reads auth requests only)
    system: str  # the system account's user: disconnects revoked Islands
    issuer: str  # the account key that signs the callout's answers

    @classmethod
    def from_secret(cls, secret: str) -> "CoordinatorKeys":
        if not secret:
            raise ValueError("SAIL_SECRET is empty")
        return cls(
            coordinator=derive_seed(secret, "coordinator"),
            callout=derive_seed(secret, "callout"),
            system=derive_seed(secret, "system"),
            issuer=derive_seed(secret, "issuer", ACCOUNT),
        )
