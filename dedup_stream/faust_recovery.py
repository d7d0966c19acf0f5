"""Faust's table recovery with the end of a rebalance reordered, so that no raw record is lost (Faust engine).

Faust (faust-streaming 0.15) ends a rebalance in ``Recovery.on_recovery_completed``: it resumes the stream
partitions, awaits the seek to the committed offsets (a round trip per partition), then calls
``flow_control.resume()``, which *clears* every stream queue. While the seek is awaited the fetcher already
delivers records of the resumed partitions into those queues; the clear drops the ones the agent has not taken yet
without acknowledging them. Faust's read offset has moved past them, and a partition without a committed offset
is not sought back, so they are never read again. What the consumer commits next decides what that costs
(``Consumer._new_offset``): one dropped record directly after the committed offset is committed over (a frame never
decided: an event lost if it was the only copy, or a winner never re-emitted); two or more leave a hole that never
fills, and the partition's offset is never committed again (the worker stalls; faust-streaming issues 596 and 606).

:class:`SeekFirstRecovery` does the same steps in another order: seek while the stream partitions are still paused,
clear the queues, and only then resume the stream partitions and the flow. No stream record can reach a queue
before the clear, so every record fetched after the rebalance is handed to the agent.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from faust.tables import recovery as faust_recovery
from faust.tables.recovery import Recovery

__all__ = ["SeekFirstRecovery", "install"]


class SeekFirstRecovery(Recovery):
    """:class:`faust.tables.recovery.Recovery` whose end of recovery seeks and clears before resuming streams."""

    async def on_recovery_completed(self, generation_id: int = 0) -> None:
        """Faust's ``on_recovery_completed`` with the seek and the queue clear before the stream partitions resume."""
        app: Any = self.app
        consumer = app.consumer
        self.log.info("Restore complete!")
        await app.on_rebalance_complete.send()
        self._set_recovery_ended()
        callbacks = [
            asyncio.ensure_future(
                table.on_recovery_completed(self.actives_for_table[table], self.standbys_for_table[table])
            )
            for table in self.tables.values()
        ]
        if callbacks:
            await asyncio.wait(callbacks)
        assignment = consumer.assignment()
        if app.consumer_generation_id != generation_id:
            self.log.warning(f"Recovery rebalancing again app id {app.consumer_generation_id} param {generation_id}")
            return
        if assignment:
            self.log.info("Seek stream partitions to committed offsets.")
            await self._wait(consumer.perform_seek(), timeout=app.conf.broker_request_timeout)
        self.completed.set()
        app.flow_control.resume()  # clears the stream queues: nothing of the stream partitions is in them yet
        consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
        consumer.resume_flow()
        await app._fetcher.maybe_start()
        self.tables.on_actives_ready()
        if not app.assignor.assigned_standbys():
            self.tables.on_standbys_ready()
        app.on_rebalance_end()
        self.log.info("Worker ready")


# Log as Faust's own Recovery does (its logger and level); set after the class statement, where mode's subclass hook
# gives every Service subclass a logger named after its module.
SeekFirstRecovery.logger = faust_recovery.logger


def install(app: Any) -> SeekFirstRecovery:
    """Make ``app``'s table manager use :class:`SeekFirstRecovery` (before the app starts)."""
    tables = app.tables
    if cast(Any, tables)._recovery is not None:
        raise RuntimeError("the table manager already created its Recovery service")
    recovery = SeekFirstRecovery(app, tables, beacon=tables.beacon, loop=tables.loop)
    tables._recovery = recovery
    return recovery
