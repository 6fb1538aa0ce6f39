"""How this Island proves who it is on the Sail.

- **Its own key** (the default): an nkey (ed25519) made on first start, its seed kept in
  ``<state_dir>/nkey.seed`` (mode 0600) and never sent anywhere; every connection signs
  the server's nonce with it. Unpaired, the key may only ask for a pairing code for
  itself (``coordinator.hosts.pairing.{key}``) and hear the answer; once paired, the
  coordinator admits it with its Island's permissions (its own ``host.{id}.*`` subjects
  and jobs consumer). Replies come on ``_INBOX_{key}``, which only it may read.
- **The shared field user**: ``user:password`` in ``nats_url``, as upstream agents do;
  the protocol's plain subjects (``coordinator.hosts.register``, ``...pairing``).
"""

import base64
import binascii
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nkeys

from .config import ConfigError
from .wire import PAIRING, REGISTER, host_subject

SEED_FILE = "nkey.seed"


@dataclass(frozen=True)
class Identity:
    seed: str | None  # None: the shared field user of the URL

    @property
    def keyed(self) -> bool:
        return self.seed is not None

    @property
    def key(self) -> str:
        assert self.seed is not None
        return nkeys.from_seed(bytearray(self.seed.encode())).public_key.decode()

    def connect_options(self) -> dict[str, Any]:
        if self.seed is None:
            return {}
        return {"nkeys_seed_str": self.seed, "inbox_prefix": f"_INBOX_{self.key}"}

    def pairing_subject(self) -> str:
        return f"{PAIRING}.{self.key}" if self.keyed else PAIRING

    def register_subject(self, host_id: str) -> str:
        return host_subject(host_id, "register") if self.keyed else REGISTER


def load(nats_url: str, state_dir: Path) -> Identity:
    """The field user when the URL carries a password; else this Island's key, made on
    first start."""
    if urlsplit(nats_url.split(",")[0].strip()).password:
        return Identity(seed=None)
    path = state_dir / SEED_FILE
    try:
        if not path.exists():
            state_dir.mkdir(parents=True, exist_ok=True)
            seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER).decode()
            # Readable by its owner only, from the moment it exists.
            with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as f:
                f.write(seed + "\n")
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        seed = path.read_text(encoding="ascii").strip()
        _check(seed)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read or write {path}: {exc}") from exc
    except Exception as exc:  # _check's and nkeys' errors: not a seed
        raise ConfigError(f"{path} does not hold an nkey seed: {exc}") from exc
    return Identity(seed=seed)


def _check(seed: str) -> None:
    """Raise unless ``seed`` is an intact user seed. nkeys decodes a seed without its
    checksum or its kind: a damaged file would silently be another key (a new, unpaired
    Island), and an account's seed a key the Sail refuses on every connection."""
    try:
        raw = base64.b32decode(seed + "=" * (-len(seed) % 8))
    except (binascii.Error, ValueError):
        raise ValueError("not base32") from None
    if len(raw) != 36:
        raise ValueError("not the length of a seed")
    if nkeys.crc16_checksum(bytearray(raw[:-2])) != raw[-2:]:
        raise ValueError("its checksum is wrong")
    if not nkeys.from_seed(bytearray(seed.encode())).public_key.startswith(b"U"):
        raise ValueError("not the seed of a user key")
