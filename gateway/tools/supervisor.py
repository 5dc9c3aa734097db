"""Keep the local Triton of `hermes up` running: restart it when it dies.

A `tritonserver` that exits by itself (a crash, an out-of-memory kill) is started again,
waiting 1, 2, 4 … up to 30 s between attempts so a server that cannot start does not spin;
the wait goes back to 1 s once a server has stayed up for a minute. The gateway needs no
restart: its replica probes see the model come back and send work to it again.
"""

from __future__ import annotations

import logging
import threading
import time

from gateway.tools.local_triton import LocalTriton, TritonLaunchError

logger = logging.getLogger(__name__)


class TritonSupervisor:
    def __init__(
        self,
        triton: LocalTriton,
        *,
        first_backoff_s: float = 1.0,
        max_backoff_s: float = 30.0,
        stable_after_s: float = 60.0,
    ) -> None:
        self.triton = triton
        self.first_backoff_s = first_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stable_after_s = stable_after_s
        self.restarts = 0
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # start/stop of the server, from either thread
        self._watcher = threading.Thread(target=self._watch, name="triton-supervisor", daemon=True)

    def start(self) -> None:
        """Watch the (already started) server."""
        self._watcher.start()

    def stop(self) -> None:
        """Stop watching, then stop the server."""
        self._stopping.set()
        with self._lock:
            self.triton.stop()
        if self._watcher.is_alive():
            self._watcher.join()

    def _watch(self) -> None:
        backoff = self.first_backoff_s
        while not self._stopping.is_set():
            if (process := self.triton.process) is not None:
                started = time.monotonic()
                code = process.wait()
                if self._stopping.is_set():
                    return
                if time.monotonic() - started >= self.stable_after_s:
                    backoff = self.first_backoff_s
                logger.error("tritonserver exited with code %s; restarting in %g s", code, backoff)
            if self._stopping.wait(backoff):
                return
            with self._lock:
                if self._stopping.is_set():
                    return
                self.triton.stop()  # reap it, and kill stubs left in its process group
                try:
                    self.triton.start()
                except (OSError, TritonLaunchError):
                    logger.exception("cannot start tritonserver again")
                else:
                    self.restarts += 1
            backoff = min(backoff * 2, self.max_backoff_s)
