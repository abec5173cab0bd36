"""This process's own figures as RabbitMQ 3.10's /api/nodes object has them (memory, file
descriptors, sockets, processes, disk, uptime, alarms). The management API shows them for the
node it runs on; a cluster node also publishes them in its etcd node key
(broker/cluster/roles.py), so that the API on any node shows every node's figures."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from typing import Any

from broker.alarms import DISK, MEMORY, ResourceMonitor, open_fds, resident_memory

PROCESS_LIMIT = 1048576  # RabbitMQ's default Erlang process limit, its proc_total

# The keys node_figures gives: what another node's object in /api/nodes has only when that
# node has published them.
FIGURE_KEYS = ("mem_limit", "mem_used", "mem_alarm", "disk_free", "disk_free_limit",
               "disk_free_alarm", "fd_total", "fd_used", "sockets_total", "sockets_used",
               "proc_total", "proc_used", "run_queue", "uptime", "os_pid", "processors")


def node_figures(alarms: ResourceMonitor, started_at: float, sockets_used: int
                 ) -> dict[str, Any]:
    """The figures of this process: `alarms` measures memory and disk, `started_at` is the
    wall-clock time it started serving, `sockets_used` its client connections."""
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return {
        "mem_limit": alarms.memory_limit, "mem_used": resident_memory(),
        "mem_alarm": MEMORY in alarms.active,
        "disk_free": alarms.disk_free, "disk_free_limit": alarms.disk_free_limit,
        "disk_free_alarm": DISK in alarms.active,
        "fd_total": fd_limit, "fd_used": open_fds(),
        "sockets_total": fd_limit, "sockets_used": sockets_used,
        "proc_total": PROCESS_LIMIT, "proc_used": len(asyncio.all_tasks()), "run_queue": 0,
        "uptime": int((time.time() - started_at) * 1000),
        "os_pid": str(os.getpid()), "processors": os.cpu_count() or 1,
    }
