"""Resource alarms, raised and cleared as RabbitMQ 3.10 does: `memory` while the process's
resident memory is above the memory high watermark, `disk` while the free space on the data
dir's file system is below the disk free limit (or while the write-ahead log cannot write).

Above `memory_high_watermark_paging_ratio` of the watermark the monitor's `paging` is set: queues
then page their transient backlogs out (broker/queue.py), as RabbitMQ pages below its alarm.

The Node owns one ResourceMonitor. It measures memory and disk about once a second and calls
`on_change` when an alarm is raised or cleared; connections then block publishers (see
broker/connection.py). `active` is the one set of alarms in effect: connections, the management
API and /metrics read it, nobody copies it.

Measuring is cheap: resident memory is one read of /proc/self/statm; free disk is one statvfs
call, made in a worker thread (RabbitMQ runs `df` off its schedulers for the same reason: a
stalled network file system must not stall the event loop), and never more than one at a time.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.config import Config

log = logging.getLogger(__name__)

MEMORY, DISK = "memory", "disk"
CHECK_INTERVAL = 1.0  # seconds; RabbitMQ's memory monitor checks every second too
MAX_MEMORY_HIGH_WATERMARK = 1.0
_UNLIMITED_CGROUP = 1 << 62  # cgroup v1 writes "no limit" as a huge page-aligned number
_MIB = 1024 * 1024
_BANNER = (
    "**********************************************************\n"
    "*** Publishers will be blocked until this alarm clears ***\n"
    "**********************************************************\n"
)


# -- measurements ------------------------------------------------------------------------------


def open_fds() -> int:
    """File descriptors the broker process has open (0 when it cannot tell)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def resident_memory() -> int:
    """The broker process's resident set size in bytes (0 when it cannot be read)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def total_memory() -> int:
    """Physical memory of the machine in bytes."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError):
        return 0


def cgroup_memory_limit(proc_cgroup: str = "/proc/self/cgroup",
                        root: str = "/sys/fs/cgroup") -> int | None:
    """The memory limit of the process's cgroup (v2 or v1), the smallest one set on it or its
    ancestors; None when no limit is set or the cgroup file system is not there."""
    try:
        with open(proc_cgroup) as file:
            lines = file.read().splitlines()
    except OSError:
        return None
    candidates: list[tuple[Path, str]] = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":  # cgroup v2
            candidates.append((Path(root) / path.lstrip("/"), "memory.max"))
        elif "memory" in controllers.split(","):  # cgroup v1
            candidates.append((Path(root) / "memory" / path.lstrip("/"), "memory.limit_in_bytes"))
    limits = []
    for directory, name in candidates:
        for level in (directory, *directory.parents):
            if not level.is_relative_to(root):
                break
            try:
                value = (level / name).read_text().strip()
            except OSError:
                continue
            if value.isdigit() and int(value) < _UNLIMITED_CGROUP:
                limits.append(int(value))
    return min(limits) if limits else None


def usable_memory() -> int:
    """Physical memory, or the cgroup's limit when one is set and smaller (in a container)."""
    total = total_memory()
    limit = cgroup_memory_limit()
    return limit if limit is not None and (limit < total or not total) else total


def disk_free(path: Path) -> int:
    """Bytes available to the broker on the file system holding `path` (blocking: statvfs)."""
    stats = os.statvfs(path)
    return stats.f_bavail * stats.f_frsize


# -- the monitor -------------------------------------------------------------------------------


class ResourceMonitor:
    """Measures memory and disk, keeps the limits (settable at run time, like rabbitmqctl's
    set_vm_memory_high_watermark and set_disk_free_limit) and the set of alarms in effect."""

    def __init__(self, config: Config, node_name: str, on_change: Callable[[], None]) -> None:
        self.node_name = node_name
        self.on_change = on_change
        self.data_dir = config.data_dir
        self.active: set[str] = set()  # MEMORY and/or DISK; mutated in place, never replaced
        self.memory_used = 0
        self.disk_free = 0
        self.usable_memory = usable_memory()
        self.memory_high_watermark = config.memory_high_watermark
        self.memory_high_watermark_absolute = config.memory_high_watermark_absolute
        self.memory_limit = self._memory_limit()
        self.paging_ratio = config.memory_high_watermark_paging_ratio
        self.paging = False  # memory above paging_ratio x memory_limit: backlogs page out
        self.disk_free_limit = config.disk_free_limit
        self.storage_error: BaseException | None = None  # the write-ahead log's last failure
        self._low_on_disk = False
        self._disk_check: asyncio.Future | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._disk_failure_logged = False

    # -- life cycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Measure once now (an alarm is in effect before the first client connects), then
        about once a second."""
        self._log_memory_limit()
        log.info("Disk free limit set to %dMB", self.disk_free_limit // 1_000_000)
        self.check_memory()
        self._disk_measured(self._measure_disk())
        self._timer = asyncio.get_running_loop().call_later(CHECK_INTERVAL, self._tick)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _tick(self) -> None:
        self.check_memory()
        if self._disk_check is None:
            loop = asyncio.get_running_loop()
            self._disk_check = loop.run_in_executor(None, self._measure_disk)
            self._disk_check.add_done_callback(self._disk_done)
        self._timer = asyncio.get_running_loop().call_later(CHECK_INTERVAL, self._tick)

    # -- memory ---------------------------------------------------------------------------

    def _memory_limit(self) -> int:
        if self.memory_high_watermark_absolute is not None:
            return min(self.memory_high_watermark_absolute, self.usable_memory)
        return int(self.memory_high_watermark * self.usable_memory)

    def set_memory_high_watermark(self, fraction: float | None = None,
                                  absolute: int | None = None) -> None:
        """A fraction of usable memory, or an absolute number of bytes; checked at once."""
        if absolute is not None:
            if absolute < 0:
                raise ValueError("the threshold should be a non-negative number of bytes")
            self.memory_high_watermark_absolute = absolute
        elif fraction is not None:
            if not 0.0 <= fraction <= MAX_MEMORY_HIGH_WATERMARK:
                raise ValueError("The threshold should be a fraction between 0.0 and 1.0")
            self.memory_high_watermark = fraction
            self.memory_high_watermark_absolute = None
        self.memory_limit = self._memory_limit()
        self._log_memory_limit()
        self.check_memory()

    def _log_memory_limit(self) -> None:
        log.info("Memory high watermark set to %d MiB (%d bytes) of %d MiB (%d bytes) total",
                 self.memory_limit // _MIB, self.memory_limit, self.usable_memory // _MIB,
                 self.usable_memory)

    def check_memory(self) -> None:
        self.memory_used = used = resident_memory()
        paging = used >= self.paging_ratio * self.memory_limit
        if paging != self.paging:
            self.paging = paging
            log.info("memory used %d MiB is %s the paging threshold (%s of the high watermark): "
                     "transient backlogs %s", used // _MIB, "above" if paging else "below",
                     self.paging_ratio, "page out" if paging else "stay in memory")
        alarmed = used > self.memory_limit
        if alarmed != (MEMORY in self.active):
            log.info("vm_memory_high_watermark %s. Memory used:%d allowed:%d",
                     "set" if alarmed else "clear", used, self.memory_limit)
            self._switch(MEMORY, alarmed)

    # -- disk -----------------------------------------------------------------------------

    async def set_disk_free_limit(self, limit: int) -> None:
        """A new limit in bytes; free space is measured again before this returns."""
        if limit < 0:
            raise ValueError("the limit should be a non-negative number of bytes")
        self.disk_free_limit = limit
        log.info("Disk free limit set to %dMB", limit // 1_000_000)
        free = await asyncio.get_running_loop().run_in_executor(None, self._measure_disk)
        self._disk_measured(free)

    def _measure_disk(self) -> int | None:
        try:
            return disk_free(self.data_dir)
        except OSError as error:
            if not self._disk_failure_logged:
                self._disk_failure_logged = True
                log.error("cannot measure free disk space on %s: %s", self.data_dir, error)
            return None

    def _disk_done(self, future: asyncio.Future) -> None:
        self._disk_check = None
        if not future.cancelled() and future.exception() is None:
            self._disk_measured(future.result())

    def _disk_measured(self, free: int | None) -> None:
        if free is None:
            return
        self.disk_free = free
        low = free < self.disk_free_limit
        if low != self._low_on_disk:
            self._low_on_disk = low
            log.info("Free disk space is %s. Free bytes: %d. Limit: %d",
                     "insufficient" if low else "sufficient", free, self.disk_free_limit)
        self._update_disk()

    def storage_failed(self, error: BaseException) -> None:
        """The write-ahead log could not write (disk full, I/O error): the disk alarm stays
        raised until a later write succeeds."""
        if self.storage_error is None:
            log.error("write-ahead log write failed: %s", error)
        self.storage_error = error
        self._update_disk()

    def storage_recovered(self) -> None:
        if self.storage_error is not None:
            log.warning("write-ahead log writes again")
            self.storage_error = None
            self._update_disk()

    def _update_disk(self) -> None:
        alarmed = self._low_on_disk or self.storage_error is not None
        if alarmed != (DISK in self.active):
            self._switch(DISK, alarmed)

    # -- alarms ---------------------------------------------------------------------------

    def _switch(self, resource: str, alarmed: bool) -> None:
        node = self.node_name
        if alarmed:
            self.active.add(resource)
            log.warning("%s resource limit alarm set on node '%s'.\n\n%s", resource, node,
                        _BANNER)
        else:
            self.active.discard(resource)
            log.warning("%s resource limit alarm cleared on node '%s'", resource, node)
            log.warning("%s resource limit alarm cleared across the cluster", resource)
        try:
            self.on_change()
        except Exception:  # a listener's bug must not stop the monitor
            log.exception("resource alarm listener failed")


def blocked_reason(active: set[str]) -> str:
    """connection.blocked's reason, as RabbitMQ words it: "low on memory", "low on disk" or
    "low on disk & memory"."""
    return "low on " + " & ".join(sorted(active))
