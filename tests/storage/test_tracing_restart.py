"""Firehose tracing does not survive a restart, as in RabbitMQ 3.10.8 (which keeps the vhosts
that trace in its application environment, not on disk: checked by restarting a node of its
own, see tests/broker/RABBITMQ_TRACING.md); a queue bound to amq.rabbitmq.trace keeps its
binding and gets copies again once tracing is switched back on."""

from __future__ import annotations

import time

from management_api import Api, eventually


def management_up(api: Api) -> None:
    def status() -> int:
        try:
            return api.get("/api/overview").status
        except OSError:  # not listening yet
            return 0
    eventually(status, lambda code: code == 200)


def test_tracing_is_off_after_a_restart(node):
    api = Api(node.host, node.management_port)
    management_up(api)
    assert api.put("/api/vhosts/%2F", {"tracing": True}).status == 204
    api.create_queue("/", "traces", durable=True)
    assert api.post("/api/bindings/%2F/e/amq.rabbitmq.trace/q/traces",
                    {"routing_key": "#"}).status == 201

    node.restart()
    management_up(api)
    assert api.get("/api/vhosts/%2F").json()["tracing"] is False
    publish = {"properties": {}, "routing_key": "nowhere", "payload": "x",
               "payload_encoding": "string"}
    assert api.post("/api/exchanges/%2F/amq.direct/publish", publish).status == 200
    assert api.get("/api/queues/%2F/traces").json()["messages"] == 0

    assert api.put("/api/vhosts/%2F", {"tracing": True}).status == 204
    assert api.post("/api/exchanges/%2F/amq.direct/publish", publish).status == 200
    deadline = time.monotonic() + 10
    while api.get("/api/queues/%2F/traces").json()["messages"] != 1:
        assert time.monotonic() < deadline, "the publish was not traced"
        time.sleep(0.05)
