"""Workarounds for faust-streaming 0.15.3 defects seen on a restarted worker, installed when an
app is created. Each names what was seen; remove it when a release fixes that.

Records out of turn. After a restart, faust hands the agent records that are not the next one
of their partition: again after a seek back (duplicates), or from past the committed offset
(records skipped, until the next restart). Both were seen in
tests/integration/test_worker_restart.py. `HandledOffsets.turn` therefore takes the committed
offset from the broker when a partition is first seen and admits only the next record of each
partition: one already handled is passed over, and on one from past a hole the consumer is
seeked back to the record that is due.

Why they come out of turn: faust drops a fetched record whose offset is below the partition's
"read offset", which it raises to each record it hands on. After a seek back (its own, to the
committed offset once tables are recovered, or ours), records fetched before the seek still
arrive, raise the read offset past the seek point, and the records fetched again from there are
then dropped as already read: the partition skips them. faust's dropping is therefore turned off
(`_NoReadOffsets`), and `HandledOffsets.turn` alone decides which records are handled.

Commits. faust derives the offset to commit from the list of acked offsets, and after a restart
that list gets duplicates (robinhood/faust#625: the committed offset then creeps one record per
commit interval) or a hole at its head (the committed offset then never moves). The offset to
commit is instead one past the last record handled in turn, committed through faust's own path,
which flushes the producer (outputs and changelogs) first. An input topic with holes in its
offsets (transaction markers, compaction) would stall at the first hole: Rapport's input topics
have none.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Iterable
from typing import Any

from faust.transport.consumer import Consumer

log = logging.getLogger(__name__)

# How long a seek back is given to take effect before it is asked for again.
_RESEEK_AFTER_SECONDS = 5.0


class Turn(enum.Enum):
    DUE = "due"  # the next record of its partition: handle it
    HANDLED = "handled"  # handled before (a redelivery): pass over it
    AHEAD = "ahead"  # past the record that is due: pass over it, it comes again in turn


class HandledOffsets:
    """Per partition, the offset of the next record to handle."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.next: dict[Any, int] = {}
        self._seeks: dict[Any, tuple[int, float]] = {}

    async def turn(self, tp: Any, offset: int) -> Turn:
        expected = self.next.get(tp)
        if expected is None:
            expected = self.next[tp] = await self._start_of(tp)
        if offset == expected:
            if self._seeks.pop(tp, None) is not None:
                log.warning("%s: back in turn at %d", tp, offset)
            return Turn.DUE
        if offset < expected:
            return Turn.HANDLED
        await self._seek_back(tp, expected, offset)
        return Turn.AHEAD

    def handled(self, tp: Any, offset: int) -> None:
        """The agent is done with the due record (processed or dead-lettered)."""
        self.next[tp] = offset + 1

    def forget(self, tps: Iterable[Any]) -> None:
        """Partitions revoked: their next assignment starts from the committed offset."""
        for tp in tps:
            self.next.pop(tp, None)
            self._seeks.pop(tp, None)

    async def _start_of(self, tp: Any) -> int:
        """The committed offset, or the partition's first offset if none was committed (the
        apps read from the earliest record)."""
        thread = self.app.consumer._thread
        client = thread._ensure_consumer()
        committed: int | None = await thread.call_thread(client.committed, tp)
        if committed is not None:
            return committed
        earliest = await thread.call_thread(client.beginning_offsets, [tp])
        return int(earliest[tp])

    async def _seek_back(self, tp: Any, expected: int, seen: int) -> None:
        now = time.monotonic()
        last = self._seeks.get(tp)
        if last is not None and last[0] == expected and now - last[1] < _RESEEK_AFTER_SECONDS:
            return
        self._seeks[tp] = (expected, now)
        log.warning("%s: record %d arrived while %d is due; seeking back", tp, seen, expected)
        try:
            await self.app.consumer.seek(tp, expected)
        except Exception:
            # A rebalance took the partition away meanwhile; its next owner starts from the
            # committed offset, which is never past `expected`.
            log.warning("seek of %s to %d failed", tp, expected, exc_info=True)


class _NoReadOffsets(dict[Any, int | None]):
    """A read-offset map that never remembers: faust's drain loop then drops no record."""

    def __getitem__(self, tp: Any) -> int | None:
        return None

    def __setitem__(self, tp: Any, offset: int | None) -> None:
        pass

    def update(self, *args: Any, **kwargs: Any) -> None:
        pass


def _consumer_init(self: Any, *args: Any, **kwargs: Any) -> None:
    _faust_consumer_init(self, *args, **kwargs)
    self._read_offset = _NoReadOffsets()


def _new_offset(self: Any, tp: Any) -> int | None:
    handled: HandledOffsets | None = getattr(self.app, "rapport_handled", None)
    if handled is None:
        result: int | None = _faust_new_offset(self, tp)
        return result
    # faust's own bookkeeping is not used for these partitions: keep it from growing.
    self._acked[tp].clear()
    self._acked_index[tp].clear()
    offset = handled.next.get(tp)
    committed = self._committed_offset[tp]
    if offset is None or (committed is not None and offset <= committed):
        return None
    return offset


_faust_new_offset = Consumer._new_offset
_faust_consumer_init = Consumer.__init__


def install(app: Any) -> HandledOffsets:
    """Admit records in turn and commit what `app`'s agents report as handled."""
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    Consumer.__init__ = _consumer_init  # type: ignore[method-assign]
    handled = HandledOffsets(app)
    app.rapport_handled = handled

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        handled.forget(args[0] if args else kwargs.get("revoked", ()))

    app.on_partitions_revoked.connect(on_revoked)
    return handled
