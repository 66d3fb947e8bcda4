# -*- test-case-name: tests.test_moderation -*-
"""
C{python -m chat.passwd NAME}: make the line of an operator for the file of
C{twistd chat --operators FILE}.

The password is read without echo from the terminal (asked twice), or as
the first line of standard input when that is not a terminal (for scripts:
C{printf '%s\\n' "$PASSWORD" | python -m chat.passwd alice}). The line
printed is C{NAME HASH}, a salted scrypt hash (L{chat.core.passwords}).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from chat.core.passwords import hash_password
from chat.core.text import NAME_RULE, is_valid_name

MIN_PASSWORD: int = 8


def read_password() -> str:
    """
    The password, from the terminal without echo, or from standard input.

    @raise SystemExit: if it is empty, too short, or the two entries differ.
    """
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise SystemExit("chat.passwd: the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if len(password) < MIN_PASSWORD:
        raise SystemExit(f"chat.passwd: the password must have at least {MIN_PASSWORD} characters")
    return password


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m chat.passwd",
        description="Print the line of an operator for twistd chat --operators FILE.",
    )
    parser.add_argument("name", help=f"the operator's name: {NAME_RULE}")
    name = parser.parse_args(argv).name
    if not is_valid_name(name):
        parser.error(f"the name must be {NAME_RULE}")
    print(f"{name} {hash_password(read_password())}")


if __name__ == "__main__":
    main()
