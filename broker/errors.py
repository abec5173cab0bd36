"""The broker core's refusals: what went wrong, in RabbitMQ's words, with no protocol in it.

A `BrokerError` carries RabbitMQ's text ("no queue 'x' in vhost '/'") and its kind, the name
RabbitMQ's own core gives the error (not_found, precondition_failed ...). The core raises these
and knows nothing of frames, class ids or reply codes; each front turns them into its answer in
one place: the AMQP channel (broker/channel.py, `amqp_error`) into a channel or connection close
with the reply code of the kind and the ids of the method being handled, the management API
(management/api/common.py, `refusal`) into RabbitMQ's HTTP status and body.
"""

from __future__ import annotations

from typing import ClassVar


class BrokerError(Exception):
    """A refusal of the broker core. `kind` is RabbitMQ's name for it; `text` its detail."""

    kind: ClassVar[str] = ""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(text)


class AccessRefused(BrokerError):
    kind = "access_refused"


class NotFound(BrokerError):
    kind = "not_found"


class ResourceLocked(BrokerError):
    kind = "resource_locked"


class PreconditionFailed(BrokerError):
    kind = "precondition_failed"


class CommandInvalid(BrokerError):
    """A request the broker cannot make sense of (an unknown exchange type): RabbitMQ ends the
    whole AMQP connection for it."""

    kind = "command_invalid"


class NotAllowed(BrokerError):
    kind = "not_allowed"


class NotImplementedByBroker(BrokerError):
    """Something RabbitMQ refuses as not implemented (immediate=true, prefetch_size)."""

    kind = "not_implemented"

