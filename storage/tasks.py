"""Stopping asyncio tasks from the code that owns them. `cancel_and_wait` cancels tasks and
waits until they are done, but lets a cancel of the *caller* through: a close that swallowed
its own cancellation would leave whoever cancelled it waiting for a task that never stops."""

from __future__ import annotations

import asyncio


async def cancel_and_wait(*tasks: asyncio.Future | None) -> None:
    """Cancel these tasks (None is skipped) and wait until each is done. Their own outcomes
    (cancelled, an error) are theirs: retrieved here, not raised. A CancelledError raised here
    means the caller itself was cancelled meanwhile; the tasks then finish on their own."""
    pending = {task for task in tasks if task is not None}
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.wait(pending)
    for task in pending:
        if not task.cancelled():
            task.exception()  # retrieved: not logged as "never retrieved"
