"""Exchange types. Each type only binds, unbinds and matches; routing across exchange-to-exchange
bindings and alternate exchanges lives in `base.route`."""

from broker.exchanges.base import Binding, BoundQueue, Exchange, route
from broker.exchanges.delayed import DelayedExchange, delay_of
from broker.exchanges.direct import DefaultExchange, DirectExchange
from broker.exchanges.fanout import FanoutExchange
from broker.exchanges.headers import HeadersExchange
from broker.exchanges.topic import TopicExchange

EXCHANGE_TYPES: dict[str, type[Exchange]] = {
    "direct": DirectExchange,
    "fanout": FanoutExchange,
    "topic": TopicExchange,
    "headers": HeadersExchange,
}
DELAYABLE_TYPES = dict(EXCHANGE_TYPES)
EXCHANGE_TYPES["x-delayed-message"] = DelayedExchange

__all__ = [
    "EXCHANGE_TYPES",
    "Binding",
    "BoundQueue",
    "DefaultExchange",
    "DelayedExchange",
    "DELAYABLE_TYPES",
    "delay_of",
    "DirectExchange",
    "Exchange",
    "FanoutExchange",
    "HeadersExchange",
    "TopicExchange",
    "route",
]
