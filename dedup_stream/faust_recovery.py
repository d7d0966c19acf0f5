"""The end of a Faust rebalance without losing raw records (Faust engine): a reordered Recovery, a fixed fetch set.

Faust (faust-streaming 0.15) loses records of the stream (raw) partitions at the end of a rebalance in two ways,
both seen in the dedup worker tests under load (the fresh-disk worker of the reemit test):

* ``Recovery.on_recovery_completed`` resumes the stream partitions, awaits the seek to the committed offsets (a
  round trip per partition), then calls ``flow_control.resume()``, which *clears* every stream queue. When the
  restore had started Faust's fetcher, records fetched during the seek were in those queues: the clear drops them
  unacknowledged, past Faust's read offset, and a partition without a committed offset is not sought back.
* The fetcher hands the consumer thread the *live* set of active partitions. When the restore pauses the changelog
  partitions while a fetch is under way, the set becomes empty, which aiokafka reads as "every assigned
  partition": the fetch returns records of the paused stream partitions, which Faust then discards as inactive,
  their position already past them.

What the consumer commits next decides the cost (``Consumer._new_offset``): one lost record directly after the
committed offset is committed over (a frame never decided: an event lost if it was the only copy, a winner never
re-emitted); two or more leave a hole that never fills, and the partition is never committed again (the worker
stalls; faust-streaming issues 596 and 606 describe the same bookkeeping).

:class:`SeekFirstRecovery` ends recovery in another order: seek while the stream partitions are still paused, clear
the queues, and only then resume the stream partitions and the flow. :func:`install` also makes every fetch ask
for a copy of the active set taken when it starts, so a fetch returns records of the partitions active then only.
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


def freeze_fetch_set(consumer: Any) -> None:
    """Make ``consumer``'s fetches ask for the partitions active when each fetch starts (a copy of the live set)."""
    fetch = consumer._getmany

    async def getmany(active_partitions: set[Any] | None, timeout: float) -> Any:
        frozen = None if active_partitions is None else set(active_partitions)
        return await fetch(active_partitions=frozen, timeout=timeout)

    consumer._getmany = getmany


def install(app: Any) -> SeekFirstRecovery:
    """Before ``app`` starts: its table manager uses :class:`SeekFirstRecovery`, its consumer fixed fetch sets."""
    tables = app.tables
    if cast(Any, tables)._recovery is not None:
        raise RuntimeError("the table manager already created its Recovery service")
    recovery = SeekFirstRecovery(app, tables, beacon=tables.beacon, loop=tables.loop)
    tables._recovery = recovery
    freeze_fetch_set(app.consumer)
    return recovery
