"""
The chat itself, without I/O: bytes and time in, lines to send, deliveries
and log events out (as h11 and websockets do for HTTP).

Nothing here imports Twisted (C{tests/test_layout.py} checks it), so every
rule can be read and tested on its own: L{chat.core.telnet},
L{chat.core.framing} and L{chat.core.terminal} turn bytes into lines,
L{chat.core.text} holds the input rules, L{chat.core.grammar} every line the
server sends, L{chat.core.room} the registry and its interface,
L{chat.core.away} the sessions of dropped users, L{chat.core.limits} the
limits and flood control, L{chat.core.stats} the counters, and
L{chat.core.moderation} (with L{chat.core.sanctions} and
L{chat.core.passwords}) the operators, bans and mutes.
"""
