"""
chat: a multi-user chat server that anyone can reach with C{telnet HOST PORT}.

L{chat.core} is the chat without I/O: every rule, each command once
(L{chat.core.session}), testable without a network or Twisted.
L{chat.server} is the Twisted adapter (connections, flow control, output
per reactor turn, logs, metrics), L{chat.cluster} the room shared through
Redis, L{chat.web} the browser client, and L{chat.tap} the C{twistd chat}
command line.
"""
