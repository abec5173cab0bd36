"""AMQP 0-9-1 wire protocol, sans-I/O: bytes in, frames and methods out, frames built."""
