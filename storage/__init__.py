"""Durable state: definitions now; the write-ahead log of messages comes with durable storage."""
