"""The C{twistd chat} plugin: one declaration, imported cheaply by twistd."""

from twisted.application.service import ServiceMaker

chat = ServiceMaker("chat", "chat.tap", "A chat server for telnet clients.", "chat")
