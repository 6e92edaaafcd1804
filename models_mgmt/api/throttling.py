"""DRF's throttles, made atomic for requests that arrive at the same time.

DRF's SimpleRateThrottle reads the request history from the cache, decides, then writes the
history back. Two requests of one client served at once both read the old history and both pass,
so N simultaneous requests could all get through a rate of 3/min (seen on PostgreSQL, where the
requests really run in parallel). Each check here holds a lock for its client across the
read-decide-write. The locks are per process: that covers the embedded default (the local-memory
cache is per process anyway) and the one daphne process that serves the API; several web processes
sharing the Redis cache would each be exact only for their own requests.
"""

from __future__ import annotations

import threading
import zlib
from typing import TYPE_CHECKING

from rest_framework import throttling

if TYPE_CHECKING:  # DRF imports this module while rest_framework.views is still loading
    from rest_framework.request import Request
    from rest_framework.views import APIView

_LOCKS = [threading.Lock() for _ in range(64)]  # striped: bounded memory, rare contention


class AtomicThrottleMixin(throttling.SimpleRateThrottle):
    def allow_request(self, request: Request, view: APIView) -> bool:
        user = getattr(request, "user", None)
        who = f"user:{user.pk}" if user is not None and user.is_authenticated else f"ip:{self.get_ident(request)}"
        lock = _LOCKS[zlib.crc32(f"{type(self).__name__}:{who}".encode()) % len(_LOCKS)]
        with lock:
            return super().allow_request(request, view)


class AnonRateThrottle(AtomicThrottleMixin, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(AtomicThrottleMixin, throttling.UserRateThrottle):
    pass


class ScopedRateThrottle(AtomicThrottleMixin, throttling.ScopedRateThrottle):
    pass
