"""Pairing codes: the alphabet, generation, normalisation and the stored lookup key.

A code has 6 characters from 32 symbols (30 bits), so the database never holds the code
itself: rows are found by ``code_hash`` (an HMAC keyed with SECRET_KEY, which a database
dump alone cannot reverse), and a desktop code is derived from a random per-row ``seed``
by a second HMAC, so that the coordinator can hand an Island its live code again without
storing it.
"""

import re
import secrets

from django.utils.crypto import salted_hmac

# 26 letters and 8 digits minus the look-alikes I, O, 0 and 1: exactly 32 symbols, so
# 5 bits of a uniform random number give one uniform symbol.
ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
DESKTOP_LENGTH = 6
# The mobile code travels in a QR code and is claimed by an unauthenticated endpoint, so
# it gets 40 bits instead of 30.
MOBILE_LENGTH = 8
_TYPED = re.compile(r"[A-Z0-9]+")
_SEPARATORS = re.compile(r"[\s-]+")


def new_seed() -> str:
    return secrets.token_hex(16)


def derive_code(seed: str, length: int = DESKTOP_LENGTH) -> str:
    """The code of a seed: 5 bits of HMAC-SHA256(SECRET_KEY, seed) per symbol."""
    number = int.from_bytes(salted_hmac("pairing.code", seed, algorithm="sha256").digest())
    return "".join(ALPHABET[(number >> (5 * i)) & 31] for i in range(length))


def random_code(length: int) -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(length))


def code_hash(code: str) -> str:
    return salted_hmac("pairing.lookup", code, algorithm="sha256").hexdigest()


def normalize(raw: object) -> str:
    """Upper-case, without spaces or dashes (people copy "a3x-9k2")."""
    return _SEPARATORS.sub("", str(raw or "")).upper()


def is_well_formed(code: str, length: int) -> bool:
    return len(code) == length and _TYPED.fullmatch(code) is not None


def has_lookalikes(code: str) -> bool:
    return any(ch in "IO01" for ch in code)
