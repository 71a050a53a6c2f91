"""Password hashing for console users: Argon2id (argon2-cffi's PasswordHasher, its default parameters).

Verification costs tens of milliseconds of CPU by design, so it runs in a worker thread, never on the event
loop. Unknown e-mails and users without a password are checked against a dummy hash, so a sign-in takes
as long whether or not the account exists.
"""

from __future__ import annotations

import asyncio
import functools

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id; parameters are encoded in each hash, so they can change later
MIN_LENGTH = 8
MAX_LENGTH = 1024  # hashing is costly: bound the input


def hash_password(password: str) -> str:
    return _hasher.hash(password)


@functools.cache
def _dummy() -> str:
    return _hasher.hash("no such user: equal work for unknown accounts")


def _verify(stored: str | None, password: str) -> bool:
    try:
        return _hasher.verify(stored or _dummy(), password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def verify_password(stored: str | None, password: str) -> bool:
    """True when `password` matches the Argon2id hash `stored` (None: no password, always False)."""
    if len(password) > MAX_LENGTH:
        return False
    return await asyncio.to_thread(_verify, stored, password)
