# -*- test-case-name: tests.test_moderation -*-
"""
Operators' passwords: salted, slow hashes (scrypt, from the standard
library), the operators file that holds them, and the backoff that slows
down wrong guesses.

A hash is one string with its parameters in it, C{scrypt$N$r$p$salt$key}
(salt and key in unpadded URL-safe base64), so stronger parameters can be
chosen later without breaking the hashes already in a file. The parameters
read from a file are bounded: a hostile or mistyped file cannot make one
check take minutes or gigabytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

from chat.core.text import is_valid_name

SCHEME: Final = "scrypt"
N: Final = 1 << 14
"""scrypt's cost: 16 MiB of memory and some 50 ms of one core per check."""
R: Final = 8
P: Final = 1
KEY_BYTES: Final = 32
SALT_BYTES: Final = 16
MAX_N: Final = 1 << 17
"""The most costly hash a file may hold (128 MiB with r=8)."""
MAX_R: Final = 16
MAX_P: Final = 4


class BadHash(ValueError):
    """A string that is not a hash this module made (or could have)."""


@dataclass(frozen=True)
class Hash:
    """A parsed password hash."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    def matches(self, password: str) -> bool:
        """Whether C{password} hashes to C{key}; compared in constant time."""
        derived = hashlib.scrypt(
            password.encode("utf-8"),
            salt=self.salt,
            n=self.n,
            r=self.r,
            p=self.p,
            dklen=len(self.key),
            maxmem=256 * self.n * self.r + (1 << 20),
        )
        return hmac.compare_digest(derived, self.key)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, n: int = N, r: int = R, p: int = P) -> str:
    """A new salted hash of C{password}, as the operators file holds it."""
    salt = os.urandom(SALT_BYTES)
    key = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=KEY_BYTES,
        maxmem=256 * n * r + (1 << 20),
    )  # fmt: skip
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(key)}"


def parse_hash(text: str) -> Hash:
    """
    Read a hash made by L{hash_password}.

    @raise BadHash: if it is not one, or its parameters are out of bounds.
    """
    parts = text.split("$")
    if len(parts) != 6 or parts[0] != SCHEME:
        raise BadHash(f"not a {SCHEME}$N$r$p$salt$key hash")
    try:
        n, r, p = (int(part) for part in parts[1:4])
        salt, key = _unb64(parts[4]), _unb64(parts[5])
    except ValueError as error:
        raise BadHash(f"unreadable hash: {error}") from None
    if not (2 <= n <= MAX_N and n & (n - 1) == 0 and 1 <= r <= MAX_R and 1 <= p <= MAX_P):
        raise BadHash(f"parameters out of bounds (N a power of 2 up to {MAX_N}, r, p)")
    if len(salt) < 8 or len(key) < 16:
        raise BadHash("salt or key too short")
    return Hash(n, r, p, salt, key)


DUMMY: Final = Hash(N, R, P, b"\0" * SALT_BYTES, b"\0" * KEY_BYTES)
"""Checked against when the name is no operator's: as slow as a real check,
so the time of the answer does not tell which names are operators."""


def operator_key(name: str) -> str:
    """Operator names are matched ignoring case."""
    return name.lower()


def parse_operators(text: str) -> dict[str, Hash]:
    """
    The operators file: one C{name hash} per line; blank lines and lines
    starting with C{#} are skipped.

    @raise ValueError: naming the first bad line.
    """
    operators: dict[str, Hash] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2 or not is_valid_name(fields[0]):
            raise ValueError(f"line {number}: expected 'name hash' (make one with chat.passwd)")
        try:
            operators[operator_key(fields[0])] = parse_hash(fields[1])
        except BadHash as error:
            raise ValueError(f"line {number}: {error}") from None
    return operators


BACKOFF_BASE: Final = 1.0
"""Seconds a first wrong password waits for its answer; each next one doubles it."""
BACKOFF_MAX: Final = 60.0
FORGET_AFTER: Final = 3600.0
"""Seconds after its last failure that an address starts again from nothing."""
MAX_ADDRESSES: Final = 4096
"""Addresses remembered at most (the oldest failure is forgotten first)."""


def backoff(failures: int) -> float:
    """The delay after the C{failures}-th wrong password in a row."""
    return min(BACKOFF_BASE * float(1 << min(failures - 1, 16)), BACKOFF_MAX)


class Failures:
    """
    Wrong passwords per address, bounded: at most L{MAX_ADDRESSES} are kept,
    each forgotten L{FORGET_AFTER} seconds after its last failure.
    """

    __slots__ = ("_by_host",)

    def __init__(self) -> None:
        self._by_host: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def count(self, host: str, now: float) -> int:
        """The failures of C{host} still remembered at C{now}."""
        entry = self._by_host.get(host)
        if entry is None or now - entry[1] > FORGET_AFTER:
            return 0
        return entry[0]

    def failed(self, host: str, now: float) -> int:
        """Count one more failure of C{host}; the new count."""
        count = self.count(host, now) + 1
        self._by_host.pop(host, None)
        self._by_host[host] = (count, now)
        while len(self._by_host) > MAX_ADDRESSES:
            self._by_host.popitem(last=False)
        return count

    def succeeded(self, host: str) -> None:
        self._by_host.pop(host, None)

    def __len__(self) -> int:
        return len(self._by_host)
