"""This process's own figures as RabbitMQ 3.10's /api/nodes object has them (memory, file
descriptors, sockets, processes, disk, uptime, alarms, storage I/O) and its description (SASL
mechanisms, plugins, HTTP contexts, log and data places). The management API shows them for
the node it runs on; a cluster node also publishes them in its etcd node key
(broker/cluster/roles.py), so that the API on any node shows every node's own."""

from __future__ import annotations

import asyncio
import os
import resource
import time
from typing import Any

from broker.alarms import DISK, MEMORY, ResourceMonitor, open_fds, resident_memory
from broker.config import Config
from storage.iostats import IO_STATS

PROCESS_LIMIT = 1048576  # RabbitMQ's default Erlang process limit, its proc_total
# The SASL mechanisms RabbitMQ 3.10 lists (EXTERNAL: its plugin's), with their descriptions
AUTH_MECHANISMS = {
    "PLAIN": "SASL PLAIN authentication mechanism",
    "AMQPLAIN": "QPid AMQPLAIN mechanism",
    "EXTERNAL": "RabbitMQ SSL authentication (SASL EXTERNAL)",  # listed when configured
}
# The RabbitMQ plugins whose features Warren has built in, always on
BUILT_IN_PLUGINS = ("rabbitmq_management", "rabbitmq_prometheus")

# The keys node_figures and node_description give: what another node's object in /api/nodes
# has only when that node has published them.
FIGURE_KEYS = ("mem_limit", "mem_used", "mem_alarm", "disk_free", "disk_free_limit",
               "disk_free_alarm", "fd_total", "fd_used", "sockets_total", "sockets_used",
               "proc_total", "proc_used", "run_queue", "uptime", "os_pid", "processors",
               "context_switches", *IO_STATS.figures(), "auth_mechanisms", "enabled_plugins",
               "contexts", "log_files", "config_files", "db_dir", "mem_calculation_strategy")


def node_figures(alarms: ResourceMonitor, started_at: float, sockets_used: int
                 ) -> dict[str, Any]:
    """The figures of this process: `alarms` measures memory and disk, `started_at` is the
    wall-clock time it started serving, `sockets_used` its client connections."""
    fd_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    usage = resource.getrusage(resource.RUSAGE_SELF)
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
        "context_switches": usage.ru_nvcsw + usage.ru_nivcsw,
        **IO_STATS.figures(),  # the storage's file I/O (io_*)
    }


def node_description(config: Config) -> dict[str, Any]:
    """What a node's configuration says of it in its /api/nodes object."""
    return {
        "auth_mechanisms": [
            {"name": name, "description": description, "enabled": name in config.auth_mechanisms}
            for name, description in AUTH_MECHANISMS.items()
            if name != "EXTERNAL" or name in config.auth_mechanisms
        ],
        "enabled_plugins": list(BUILT_IN_PLUGINS), "contexts": http_contexts(config),
        "log_files": [str(config.log_file) if config.log_file else "<stderr>"],
        "config_files": [str(config.config_file)] if config.config_file else [],
        "db_dir": str(config.data_dir.resolve()), "mem_calculation_strategy": "rss",
    }


def http_contexts(config: Config) -> list[dict[str, str]]:
    """The HTTP contexts: the management API, the UI and /metrics share one port."""
    return [{"description": "RabbitMQ Management", "path": "/",
             "port": str(config.management_port)}]
