"""How many ARM requests jitctl has in flight, and how it backs off when ARM says to.

ARM throttles per subscription: each answer carries `x-ms-ratelimit-remaining-subscription-reads`
(reads left before it answers 429), and a 429 carries `Retry-After`
(learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling).
azure-core's RetryPolicy already waits out Retry-After for the request that got the 429; the
Budget makes every other request wait too, halves how many may run at once, and when few reads
are left runs them one at a time, paced. It grows back one request at a time as answers succeed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

REMAINING_READS = "x-ms-ratelimit-remaining-subscription-reads"


class Budget:
    """A gate for ARM requests: at most `limit` at once (between 1 and `size`), none before
    `resume_at`; `observe()` adjusts both from each answer. Thread-safe."""

    def __init__(
        self,
        size: int = 8,
        low_reads: int = 50,
        pace: float = 0.05,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.size = max(1, size)
        self.low_reads = low_reads
        self.pace = pace  # seconds between request starts while reads run low
        self.limit = self.size
        self.active = 0
        self.peak = 0  # the most requests seen in flight at once
        self.resume_at = 0.0
        self.paced = False
        self._grow = 0  # successes since the limit last changed
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()

    def acquire(self) -> None:
        with self._cond:
            while True:
                wait = self.resume_at - self._clock()
                if wait <= 0 and self.active < self.limit:
                    break
                if wait > 0 and self._sleep is not None:  # tests: a fake clock moves on
                    self._cond.release()
                    try:
                        self._sleep(wait)
                    finally:
                        self._cond.acquire()
                    continue
                self._cond.wait(timeout=wait if wait > 0 else None)
            self.active += 1
            self.peak = max(self.peak, self.active)
            if self.paced:
                self.resume_at = max(self.resume_at, self._clock() + self.pace)

    def release(self) -> None:
        with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def observe(self, status: int, headers: Any) -> None:
        """Learn from one answer: 429 -> pause everyone for Retry-After, halve the limit; few
        reads left -> one at a time, paced; otherwise grow the limit back by one per `limit`
        successes."""
        with self._cond:
            if status == 429:
                now = self._clock()
                self.resume_at = max(self.resume_at, now + _retry_after(headers))
                self.limit, self._grow = max(1, self.limit // 2), 0
                self._cond.notify_all()
                return
            remaining = _int(headers.get(REMAINING_READS))
            if remaining is not None and remaining < self.low_reads:
                self.limit, self.paced, self._grow = 1, True, 0
                return
            self.paced = False
            if self.limit < self.size:
                self._grow += 1
                if self._grow >= self.limit:
                    self.limit, self._grow = self.limit + 1, 0
                    self._cond.notify_all()


def _int(text: Any) -> int | None:
    try:
        return int(str(text).strip()) if text is not None else None
    except ValueError:
        return None


def _retry_after(headers: Any) -> float:
    """Seconds from Retry-After (ARM sends a number of seconds); 1 s when absent or a date."""
    for name in ("retry-after-ms", "x-ms-retry-after-ms"):
        ms = _int(headers.get(name))
        if ms is not None:
            return ms / 1000
    seconds = _int(headers.get("retry-after"))
    return float(seconds) if seconds is not None else 1.0


def throttle_policy(budget: Budget) -> Any:
    """An azure-core policy that passes every request (each retry too) through `budget`.

    It takes the place of the clients' custom_hook_policy, which runs after the RetryPolicy,
    so it sees each attempt and its answer."""
    from azure.core.pipeline.policies import HTTPPolicy

    class Throttle(HTTPPolicy):
        def send(self, request: Any) -> Any:
            budget.acquire()
            try:
                response = self.next.send(request)
            finally:
                budget.release()
            http = response.http_response
            budget.observe(http.status_code, http.headers)
            return response

    return Throttle()
