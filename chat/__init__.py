"""
chat: a multi-user chat server that anyone can reach with C{telnet HOST PORT}.

The package is split so that every rule can be tested without a network:
L{chat.core.telnet}, L{chat.core.framing} and L{chat.core.terminal} turn raw bytes into
lines, L{chat.core.text}
holds the input rules, L{chat.core.grammar} the output grammar, L{chat.core.room} the
registry; L{chat.server.protocol} (a connection), L{chat.server.handlers} (its commands)
and L{chat.server.factory} (what connections share) are the Twisted side.
"""
