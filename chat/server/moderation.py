# -*- test-case-name: tests.test_moderation -*-
"""
The I/O side of moderation (L{chat.core.moderation}): the files of
C{--operators} and C{--bans}, and password checks in a thread.

A password check is scrypt: tens of milliseconds of CPU and 16 MiB by
design. Run on the reactor thread it would stop every other connection
meanwhile, so it runs in the reactor's thread pool (hashlib releases the
GIL while it hashes); the session's input waits for its answer, so one
connection has at most one check running, and only registered users (at
most C{--max-users}) can ask for one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from chat.core.passwords import Hash, parse_operators
from chat.core.room import Later
from chat.core.sanctions import Sanction, Sanctions, file_text, read_file_text

log = Logger()


def verify_in_thread(hash: Hash, password: str) -> Later[bool]:
    """Check C{password} in the reactor's thread pool; a failure is a mismatch (logged)."""
    later: Later[bool] = Later()

    def failed(failure: Failure) -> None:
        log.failure("password check failed", failure)
        later.resolve(False)

    checked: Deferred[bool] = deferToThread(hash.matches, password)
    checked.addCallbacks(later.resolve, failed)
    return later


def read_operators(path: str) -> dict[str, Hash]:
    """
    The operators of C{--operators FILE}.

    @raise ValueError: if the file cannot be read or has a bad line.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    return parse_operators(text)


def read_bans(path: str) -> list[Sanction]:
    """
    The bans kept in C{--bans FILE}; none if the file does not exist yet.

    @raise ValueError: if it exists but cannot be read, or is not a bans
        file (a server that forgot its bans silently would let them in).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read {path}: {error}") from None
    try:
        return read_file_text(text)
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None


def write_atomically(path: str, text: str) -> None:
    """
    Replace C{path} with C{text}: written to a temporary file beside it,
    synced, then renamed over it, so a crash leaves the old file or the new
    one, never half of one.
    """
    directory = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".bans-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


class BanFile:
    """
    The L{Keeper} of C{--bans FILE}: every change rewrites the file (at most
    L{chat.core.sanctions.MAX_BANS} lines, on operators' commands only).
    """

    def __init__(self, path: str) -> None:
        self.path = path

    def saved(self, bans: Sanctions, changed: Sanction, lifted: bool) -> bool:
        try:
            write_atomically(self.path, file_text(bans))
        except OSError as error:
            # The ban holds in memory; it will not survive a restart.
            log.warn("could not write the bans to {path}: {why}", path=self.path, why=error)
        return True
