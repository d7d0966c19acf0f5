"""Run ``mdpipe`` (argv as for ``python -m mdpipe``) with a Faust worker that is SIGKILLed right after a commit that
named every raw frame, while the last events were held in a flush: a fault injection for the Faust engine's tests.

Once the worker has decided ``MDPIPE_TEST_FRAMES`` frames (all that were fed), the first events flush waits
``HOLD_S`` (longer than the commit interval) for its changelog acknowledgement (as on a slow broker or a loaded
machine): it has taken the last event batches out of the pending set, and the agent, with nothing left to read,
appends no other. A commit made then must not name the frames of those events before they are acknowledged. The
worker kills itself (SIGKILL) as soon as a commit has named every frame; whatever had not reached the broker then is
lost unless the restarted worker reads its frames again.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

from faust.transport.drivers.aiokafka import Consumer

from dedup_stream.app import DedupApp
from dedup_stream.output import OutputBatcher

HOLD_S = 4.0  # longer than the Faust engine's commit interval (dedup_stream.app.COMMIT_INTERVAL_S, 2 s)
FRAMES = int(os.environ["MDPIPE_TEST_FRAMES"])

_apps: list[DedupApp] = []
_held = False
_committed: dict[Any, int] = {}
_original_init = DedupApp.__init__
_original_confirm = OutputBatcher.confirm
_original_commit = Consumer._commit


def init(self: DedupApp, settings: Any) -> None:
    _original_init(self, settings)
    _apps.append(self)


async def held_confirm(self: OutputBatcher) -> None:
    global _held
    app = _apps[0]
    if not _held and self is app.changelog and app.frames >= FRAMES:
        _held = True
        print(f"fault: events flush held {HOLD_S}s", flush=True)
        await asyncio.sleep(HOLD_S)
    await _original_confirm(self)


async def commit_then_die(self: Any, offsets: Any) -> bool:
    did = bool(await _original_commit(self, offsets))
    if did:
        raw = set(_apps[0].settings.raw_topics)
        _committed.update({tp: offset for tp, offset in offsets.items() if tp.topic in raw})
        if sum(_committed.values()) >= FRAMES:
            print("fault: SIGKILL after a commit that named every frame", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    return did


DedupApp.__init__ = init  # type: ignore[method-assign]
OutputBatcher.confirm = held_confirm  # type: ignore[method-assign]
Consumer._commit = commit_then_die  # type: ignore[method-assign]

if __name__ == "__main__":
    from mdpipe.cli import main

    sys.exit(main(sys.argv[1:]))
