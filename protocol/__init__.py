"""AMQP 0-9-1 wire protocol, sans-I/O: bytes in, frames and methods out, frames built, and the
connection side of the session (session.py: handshake, closes, heartbeats, channel numbers).

A channel's own state machines are not here yet: they live in broker/channel.py (see
docs/architecture.md, "Not there yet")."""
