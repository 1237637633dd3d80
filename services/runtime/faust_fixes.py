"""Workarounds for faust-streaming 0.15.3 defects seen on a restarted worker, installed when an
app is created. Each names what was seen; remove it when a release fixes that.

Commits. faust derives the offset to commit from the list of acked offsets, and after a
restart that list gets duplicates (robinhood/faust#625: the committed offset then creeps one
record per commit interval) or a hole at its head (the committed offset then never moves). Both
were seen in tests/integration/test_worker_restart.py. Our agents handle each partition in
order, one event at a time, and every effect is idempotent, so the offset to commit is one past
the end of the unbroken run of offsets handled from the committed offset on. `HandledOffsets`
keeps that run: a record delivered out of turn (before a seek back, or again after it) never
moves it, so a commit can never pass a record that was not handled. The consumer commits it
through faust's own path, which flushes the producer (outputs and changelogs) before
committing. An input topic with holes in its offsets (transaction markers, compaction) would
stop the run at the first hole: Rapport's input topics have none.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from faust.transport.consumer import Consumer


class HandledOffsets:
    """Per partition, the next offset of the unbroken run handled from the committed offset."""

    def __init__(self) -> None:
        self.next: dict[Any, int] = {}

    def handled(self, tp: Any, offset: int, committed: int | None) -> None:
        """The agent is done with this record (processed or dead-lettered). `committed` is
        where the partition was committed when it was assigned (None: never committed)."""
        expected = self.next.get(tp)
        if expected is None:
            expected = offset if committed is None else committed
        if offset == expected:
            self.next[tp] = offset + 1

    def forget(self, tps: Iterable[Any]) -> None:
        """Partitions revoked: their next assignment starts from the committed offset."""
        for tp in tps:
            self.next.pop(tp, None)


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


def install(app: Any) -> HandledOffsets:
    """Commit what `app`'s agents report as handled."""
    Consumer._new_offset = _new_offset  # type: ignore[method-assign]
    handled = HandledOffsets()
    app.rapport_handled = handled

    async def on_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        handled.forget(args[0] if args else kwargs.get("revoked", ()))

    app.on_partitions_revoked.connect(on_revoked)
    return handled
