"""Management plane (HTTP API, web UI, /metrics): reserved; served from a later release."""
