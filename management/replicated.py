"""In a cluster, a change made through the API is answered once it is durable on the followers
the leader's confirms wait for (as a durable declare-ok over AMQP is): the `replicated_writes`
middleware holds the answer to a PUT, POST or DELETE under /api/ until the definitions written
so far are durable (`Node.when_definitions_durable`, which the replication's confirm gate holds
back). On a single node (`node.cluster` None) it does nothing."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from management.api.common import node_of

log = logging.getLogger(__name__)

REPLICATION_WAIT = 30.0  # seconds an API change waits for the in-sync followers


@web.middleware
async def replicated_writes(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    response = await handler(request)
    node = node_of(request)
    if node.cluster is None or request.method not in ("PUT", "POST", "DELETE") or (
            not request.path.startswith("/api/")):
        return response
    durable = asyncio.get_running_loop().create_future()
    node.when_definitions_durable(lambda: durable.done() or durable.set_result(None))
    try:
        async with asyncio.timeout(REPLICATION_WAIT):
            await durable
    except TimeoutError:
        log.warning("%s %s: not replicated within %.0fs", request.method, request.path,
                    REPLICATION_WAIT)
        body = json.dumps({"error": "not_replicated", "reason": "the change is made on the "
                           "leader but the in-sync followers have not confirmed it yet"})
        raise web.HTTPServiceUnavailable(text=body, content_type="application/json") from None
    return response
