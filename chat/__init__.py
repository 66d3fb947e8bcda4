"""
chat: a multi-user chat server that anyone can reach with C{telnet HOST PORT}.

The package is split so that every rule can be tested without a network:
L{chat.telnet}, L{chat.framing} and L{chat.terminal} turn raw bytes into
lines, L{chat.commands}
holds the input rules, L{chat.replies} the output grammar, L{chat.room} the
registry; L{chat.protocol} (a connection), L{chat.handlers} (its commands)
and L{chat.factory} (what connections share) are the Twisted side.
"""
