# -*- test-case-name: tests.test_protocol -*-
"""
Every line the server sends, in one place: the reply grammar.

Each line is C{TAG SP rest CRLF}, and the tag says what the line is:

  - C{INFO text}: a notice for people (greeting, help, STATUS); may come
    at any time; programs can ignore it.
  - C{USER name (notes)}: one registered user, in answer to LIST, with
    its idle time, its away message, and whether it is disconnected and
    held for a resume (the grace period).
  - C{MESG sender: text} / C{BCST sender: text}: a private or broadcast
    message from another user; C{* sender text} an action (ME), C{ACTION
    sender text} in the machine format; C{HIST time sender: text} a kept
    broadcast that HISTORY replays. These are the only lines that carry
    what a user wrote, and only after the tag and the sender's name; user
    text never contains a line break, so it can never start a line of its
    own.
  - C{OK VERB details}: the command succeeded.
  - C{ERR Reason: details}: the command failed; C{Reason} is one of the
    fixed phrases below, C{details} is for people.
  - C{BYE Reason: details}: the server is closing the connection, and why;
    always the last line.
  - C{PRESENCE KIND name [field]}: a user joined, left, lost the connection
    or was removed (machine format, after C{NOTICES ON}; the human format
    says it in an C{INFO} line). Made in L{chat.core.presence}.

Every command gets exactly one C{OK} or C{ERR} line, after any C{USER},
C{INFO} or replayed lines that belong to it, so a program knows where an
answer ends. L{MachineFormat} (C{MODE MACHINE}) writes the same tags with
fields only.
"""

from __future__ import annotations

import time
from typing import Final
from urllib.parse import quote

from chat.core.text import NAME_RULE

CRLF: Final = b"\r\n"

RESUME_HELP: Final = "JOIN <username> <token> take your name back after a dropped connection"
HELP_TEXT: Final = (
    "JOIN <username>         register; " + NAME_RULE,
    "LIST                    list the registered users",
    "MESG <username> <text>  send a private message",
    "BCST <text>             send a message to everyone else",
    "ME <text>               an action, to everyone else: * you <text>",
    "HISTORY [<count>]       the last broadcasts the server keeps, oldest first",
    "STATUS                  your limits and usage, and the server's",
    "AWAY [<message>]        mark yourself away (without a message: back)",
    "BACK                    no longer away",
    "IGNORE [<username>]     hide what a user writes to you; alone: whom you ignore",
    "UNIGNORE <username>     stop ignoring a user",
    "NOTICES ON|OFF          notices of users joining and leaving (human format: on)",
    "MODE MACHINE|HUMAN      switch to the strict format for programs, or back",
    "MODE EDIT [<options>]   at a telnet terminal: the server edits your line, messages above it",
    "MODE EDIT options       TIME (HH:MM stamps), BELL (private messages, your name), COLOR",
    "MODE LINE               back from MODE EDIT: your client edits its lines again",
    "HELP                    show this help",
    "QUIT                    leave and close the connection",
)
OPER_HELP: Final = "OPER <name> <password>  become an operator (the server's moderators)"
OPERATOR_HELP: Final = (
    "KICK <user> [<reason>]  (operators) disconnect a user",
    "MUTE <user> <minutes> [<reason>]  (operators) refuse a user's messages for a while",
    "UNMUTE <user>           (operators) lift a mute",
    "BAN <user or address> <minutes> [<reason>]  (operators) refuse a name or an IP address",
    "UNBAN <user or address> (operators) lift a ban",
)

IDLE_SHOWN: Final = 60
"""Seconds of idleness from which a human LIST shows it (machine LIST: always)."""

# The fixed ERR reasons, as a program should match them.
TOO_MANY_USERS: Final = "Too Many Users"
USERNAME_TAKEN: Final = "Username Taken"
INVALID_USERNAME: Final = "Invalid Username"
ALREADY_REGISTERED: Final = "Already Registered"
UNREGISTERED_USER: Final = "Unregistered User"
UNKNOWN_RECIPIENT: Final = "Unknown Recipient"
UNKNOWN_MESSAGE: Final = "Unknown Message"
USAGE: Final = "Usage"
LINE_TOO_LONG: Final = "Line Too Long"
CLUSTER_UNAVAILABLE: Final = "Cluster Unavailable"
INVALID_TOKEN: Final = "Invalid Token"
MESSAGE_DROPPED: Final = "Message Dropped"
NOT_A_TERMINAL: Final = "Not A Terminal"  # MODE EDIT: the client did not agree (human format only)
# ... of moderation (chat.core.moderation).
NOT_OPERATOR: Final = "Not Operator"
WRONG_PASSWORD: Final = "Wrong Password"
UNKNOWN_USER: Final = "Unknown User"
MUTED: Final = "Muted"
BANNED: Final = "Banned"
NOT_MUTED: Final = "Not Muted"
NOT_BANNED: Final = "Not Banned"
STORE_FULL: Final = "Store Full"

# The fixed BYE reasons.
TOO_MANY_CONNECTIONS: Final = "Too Many Connections"
JOIN_TIMEOUT: Final = "Join Timeout"
IDLE_TIMEOUT: Final = "Idle Timeout"
FLOODING: Final = "Flooding"
SHUTTING_DOWN: Final = "Shutting Down"
KICKED: Final = "Kicked"  # and BANNED (above): an ERR at JOIN, a BYE to who is online


def line(text: str) -> bytes:
    """Encode one server line."""
    return text.encode("utf-8") + CRLF


def info(text: str) -> bytes:
    return line("INFO " + text)


def relayed(verb: str, sender: str, text: str) -> bytes:
    """
    A user's message as its recipients see it (C{verb}: MESG or BCST). The
    same in both formats, so a broadcast is encoded once for everyone.
    """
    return f"{verb} {sender}: {text}\r\n".encode()


ACTION: Final = "ACTION"
"""The tag of an action in the machine format."""


def action(sender: str, text: str) -> tuple[bytes, bytes]:
    """An action (ME) as its recipients see it: in the human format, and in the machine one."""
    return f"* {sender} {text}\r\n".encode(), f"{ACTION} {sender} {text}\r\n".encode()


def action_for_machine(human: bytes) -> bytes:
    """The machine form of an action's human line (C{* sender text})."""
    return ACTION.encode() + human[1:]


def stamp(when: float) -> str:
    """A time as HISTORY shows it: UTC, to the second (C{2026-12-01T22:55:20Z})."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def help_text(resume: bool) -> bytes:
    """The INFO lines of HELP; the resume line only where resume is on (C{--grace})."""
    lines = HELP_TEXT[:1] + (RESUME_HELP,) + HELP_TEXT[1:] if resume else HELP_TEXT
    return b"".join(map(info, lines))


def field(text: str) -> str:
    """
    Free text (an operator's reason) as one machine-mode field: percent-encoded
    UTF-8 (RFC 3986, C{-} encoded too), or C{-} when empty.
    """
    return quote(text, safe="").replace("-", "%2D") if text else "-"


def code(reason: str) -> str:
    """The machine form of a reason: C{Too Many Users} -> C{TOO_MANY_USERS}."""
    return reason.upper().replace(" ", "_")


class Format:
    """
    How the replies to one connection's own commands are written.

    The human format reads as sentences after a fixed tag; the machine
    format (C{MODE MACHINE}, version L{MACHINE_VERSION}) has only
    space-separated fields, and reasons as codes. Relayed messages and
    C{INFO} lines are the same in both.
    """

    machine = False

    def ok(self, verb: str, human: str, *fields: object) -> bytes:
        return f"OK {verb} {human}\r\n".encode()

    def receipt(self, name: str, outcome: str) -> bytes:
        """
        C{OK MESG name outcome} for a message delivered, or sent to another
        node: the same line in both formats, and the most frequent reply.
        """
        return f"OK MESG {name} {outcome}\r\n".encode()

    def receipts(self, names: list[str]) -> bytes:
        """The receipts of messages delivered to C{names}, in one piece."""
        return ("OK MESG " + " delivered\r\nOK MESG ".join(names) + " delivered\r\n").encode()

    def error(self, reason: str, details: str, *fields: object) -> bytes:
        return line(f"ERR {reason}: {details}")

    def bye(self, reason: str, details: str, *fields: object) -> bytes:
        return line(f"BYE {reason}: {details}")

    def user(self, name: str, held: bool, idle: int | None, away: str | None) -> bytes:
        """
        One user of LIST: C{held} in the grace period (disconnected),
        C{idle} seconds since their last command (C{None}: not known here, a
        user of another node; shown to people from L{IDLE_SHOWN} seconds on,
        a user who typed within the minute being simply there), and their
        away message.
        """
        if not held and away is None and (idle is None or idle < IDLE_SHOWN):
            return f"USER {name}\r\n".encode()  # nearly everyone
        notes = ["disconnected, held for a resume"] if held else []
        if idle is not None and idle >= IDLE_SHOWN:
            notes.append(f"idle {idle}s")
        if away is not None:
            notes.append(f"away: {away}")
        return line(f"USER {name} ({'; '.join(notes)})" if notes else f"USER {name}")

    def status(self, key: str, human: str, *fields: object) -> bytes:
        return info(f"{key}: {human}")

    def notice(self, tag: str, human: str, *fields: object) -> bytes:
        """
        A line that is not an answer (something happened to this user): an
        C{INFO} line for people, a C{tag} of its own with fields for programs.
        """
        return info(human)

    def hist(self, when: float, verb: str, sender: str, text: str) -> bytes:
        """One kept broadcast that HISTORY replays: never mistaken for a live one."""
        if verb == "ME":
            return line(f"HIST {stamp(when)} * {sender} {text}")
        return line(f"HIST {stamp(when)} {sender}: {text}")


class MachineFormat(Format):
    machine = True

    def ok(self, verb: str, human: str, *fields: object) -> bytes:
        return line(" ".join(("OK", verb, *map(str, fields))))

    def error(self, reason: str, details: str, *fields: object) -> bytes:
        return line(" ".join(("ERR", code(reason), *map(str, fields))))

    def bye(self, reason: str, details: str, *fields: object) -> bytes:
        return line(" ".join(("BYE", code(reason), *map(str, fields))))

    def user(self, name: str, held: bool, idle: int | None, away: str | None) -> bytes:
        """C{USER name here|away idle|- -|AWAY [message]}: the message is the rest of the line."""
        state = "away" if held else "here"
        marked = "-" if away is None else f"AWAY {away}"
        return line(f"USER {name} {state} {'-' if idle is None else idle} {marked}")

    def status(self, key: str, human: str, *fields: object) -> bytes:
        return line(" ".join(("STAT", key.lower().replace(" ", "_"), *map(str, fields))))

    def notice(self, tag: str, human: str, *fields: object) -> bytes:
        return line(" ".join((tag, *map(str, fields))))

    def hist(self, when: float, verb: str, sender: str, text: str) -> bytes:
        return line(f"HIST {stamp(when)} {verb} {sender} {text}")


MACHINE_VERSION: Final = 2
HUMAN: Final = Format()
MACHINE: Final = MachineFormat()


def greeting(history: int) -> bytes:
    """
    The first lines of every connection; the second says how many
    broadcasts the server keeps (C{--history}), which anyone may replay.
    """
    kept = (
        f", HISTORY for the last {history} broadcasts." if history else ". No broadcasts are kept."
    )
    return info("Welcome to chat. Register with: JOIN <username>") + info(
        f"Usernames are {NAME_RULE}. Type HELP for the commands{kept}"
    )


HOW_TO_JOIN: Final = "register first with JOIN <username>; HELP lists the commands"
