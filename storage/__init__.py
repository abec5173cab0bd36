"""Durable state: the write-ahead log of persistent messages, their recovery (log scan or the
clean-stop index snapshot), the page store for transient bodies, the data directory and the
definitions file. See docs/architecture.md and docs/storage-format.md."""
