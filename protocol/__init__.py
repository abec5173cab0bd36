"""AMQP 0-9-1 wire protocol, sans-I/O: bytes in, frames and methods out, frames built.

The connection and channel state machines are not here yet: they live in broker/connection.py
and broker/channel.py (see docs/architecture.md, "Not there yet")."""
