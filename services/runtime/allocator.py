"""The workers' memory allocator: jemalloc where the host has it (Debian's libjemalloc2),
preloaded by whatever starts them: `rapport up` and the demo, the bench, the service image.

glibc's malloc keeps what a process freed inside its heaps (the main one, and an arena for each
thread that allocated: RocksDB's flushes and compactions, the read model's writer) wherever a
live allocation sits above it, and `free()` gives back only the top of a heap. A worker's
short-lived buffers (states read and decoded, memtables, compaction blocks, fetched records)
leave freed memory spread between live allocations, and the RSS grew with it: a lifecycle
worker with a RocksDB store grew by 3,799 bytes a customer at 30,000 customers, of which
jemalloc's heap profile found about 550 live. jemalloc gives freed pages back after a few
seconds: the same run grew by 477 bytes a customer, 495 at 100,000 (docs/benchmarks.md,
2026-12-07, night). `MALLOC_ARENA_MAX` did not move it, nor did RocksDB's own caps.

Preloaded at the start rather than swapped in by the worker itself: a worker that started
itself again under jemalloc would import everything twice, a second more for every restart.
"""

from __future__ import annotations

import ctypes.util
from collections.abc import Mapping
from pathlib import Path

# RAPPORT_ALLOCATOR=glibc keeps glibc's malloc (a worker under a memory profiler, say).
OPT_OUT = "RAPPORT_ALLOCATOR"


def jemalloc_library() -> str | None:
    """The name the dynamic loader knows jemalloc by on this host, if it has it."""
    return ctypes.util.find_library("jemalloc")


def with_jemalloc(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with jemalloc preloaded, for a worker about to start; unchanged when the host has
    no jemalloc, when it is preloaded already, or when `RAPPORT_ALLOCATOR=glibc` says not to."""
    result = dict(env)
    preload = result.get("LD_PRELOAD", "")
    if result.get(OPT_OUT) == "glibc" or "jemalloc" in preload:
        return result
    library = jemalloc_library()
    if library is not None:
        result["LD_PRELOAD"] = f"{library} {preload}".strip()
    return result


def in_use() -> str:
    """Which allocator this process runs on, for its start-up log."""
    maps = Path("/proc/self/maps")
    if maps.exists() and "jemalloc" in maps.read_text():
        return "jemalloc"
    return "glibc malloc"
