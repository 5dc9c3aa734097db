"""Give the memory that decoding freed back to the operating system.

Batches of different shapes (1–16 windows, 3–30 s, with or without word timing) leave glibc's
heap holding freed blocks it does not return by itself: measured on tiny.en, the process grew
from 606 to 730–780 MB after ten mixed batches and settled at 1.06 GB over a five-minute soak,
while `malloc_trim(0)` brought it back to 606 MB each time (a cost of about 15 ms). A trim at
most every `min_interval_s` during steady work was not enough: the soak's last sample followed
a burst of batches by seconds, with nothing to trim an idle instance. So the trimmer also trims
once whenever the instance has been idle for `idle_s`, never while a batch runs.

Between trims glibc is told to keep what is freed (`keep_freed_memory`): by default it maps
every block over its mmap threshold (128 kB, rising to 32 MB) afresh from the kernel and
returns it when freed, so each of a batch's large tensors (a 30 s window's activations:
2-74 MB each for 8 windows of tiny.en) took new pages, every 4 kB page a fault on first
write: on the 2-vCPU VM 24 ms to copy a bias into an 18 MB product. Kept in the heap, the
next layer's tensors reuse them: 8 windows of the conversation composite in 3.7-3.9 s
instead of 4.0-4.5 s, with a trim before each batch as the trimmer does after idling (the
resident size is what it was at the batch's peak until the trim).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# mallopt's parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def _libc_function(name: str) -> Callable[..., int] | None:
    """A function of glibc, or None where the C library has none (e.g. musl)."""
    library = ctypes.util.find_library("c")
    if library is None:
        return None
    return getattr(ctypes.CDLL(library), name, None)


def keep_freed_memory(mallopt: Callable[[int, int], int] | None = None) -> bool:
    """Have glibc serve every block from its heap and never shrink the heap by itself (only
    `malloc_trim` does); whether it took both settings (False without glibc)."""
    mallopt = mallopt or _libc_function("mallopt")
    if mallopt is None:
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


class HeapTrimmer:
    """`with trimmer.working(): decode()` around every batch."""

    def __init__(
        self,
        min_interval_s: float = 10.0,
        idle_s: float = 1.0,
        trim: Callable[[int], int] | None = None,
    ) -> None:
        self.min_interval_s = min_interval_s
        self.idle_s = idle_s
        self._trim = trim or _libc_function("malloc_trim")
        self._lock = threading.Lock()  # held while trimming: a batch never runs beside a trim
        self._running = 0  # batches in progress
        self._dirty = False  # a batch ended since the last trim
        self._last_trim = float("-inf")
        self._last_batch_end = float("-inf")
        self._batch_ended = threading.Event()
        self.trims = 0
        if self._trim is not None:
            threading.Thread(target=self._trim_when_idle, name="heap-trimmer", daemon=True).start()

    @contextmanager
    def working(self) -> Iterator[None]:
        with self._lock:
            self._running += 1
        try:
            yield
        finally:
            with self._lock:
                self._running -= 1
                self._dirty = True
                self._last_batch_end = time.monotonic()
                if self._last_batch_end - self._last_trim >= self.min_interval_s:
                    self._trim_locked()
            self._batch_ended.set()

    def _trim_locked(self) -> None:
        if self._trim is not None:
            self._trim(0)
            self.trims += 1
        self._last_trim = time.monotonic()
        self._dirty = False

    def _trim_when_idle(self) -> None:
        """Background thread: after a batch, wait until `idle_s` pass with none running, trim."""
        while True:
            self._batch_ended.wait()
            self._batch_ended.clear()
            while True:
                with self._lock:
                    if not self._dirty:
                        break
                    wait = self._last_batch_end + self.idle_s - time.monotonic()
                    if wait <= 0 and self._running == 0:
                        self._trim_locked()
                        break
                time.sleep(max(wait, self.idle_s / 10))
