"""DRF's throttles, made atomic for requests that arrive at the same time, in one process or many.

DRF's SimpleRateThrottle reads the request history from the cache, decides, then writes the
history back. Two requests of one client served at once both read the old history and both pass,
so N simultaneous requests could all get through a rate of 3/min (seen on PostgreSQL, where the
requests really run in parallel). Two ways to make the read-decide-write one step:

* with `REDIS_URL` (several web processes, several hosts) the whole sliding-window decision is one
  Lua script run by Redis (scripts run atomically): trim the client's sorted set of request times
  to the window, count, add this request if under the limit. The clock is Redis's own (`TIME`),
  so hosts with skewed clocks still share one window. Exact across every process that shares it.
* without Redis (the embedded default) each check holds a per-process lock for its client across
  DRF's read-decide-write on the local-memory cache: exact for the one web process `make run`
  starts, per process when several run (each then allows the rate on its own).
"""

from __future__ import annotations

import threading
import uuid
import zlib
from typing import TYPE_CHECKING, Any

from django.conf import settings
from rest_framework import throttling

if TYPE_CHECKING:  # DRF imports this module while rest_framework.views is still loading
    from rest_framework.request import Request
    from rest_framework.views import APIView

_LOCKS = [threading.Lock() for _ in range(64)]  # striped: bounded memory, rare contention
KEY_PREFIX = "techanal:throttle:"

# KEYS[1] the client's window; ARGV: window seconds, limit, a unique member for this request.
# Returns {1, 0} when allowed, else {0, seconds until the oldest request in the window expires}.
SLIDING_WINDOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
  return {1, '0'}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, tostring(window - (now - tonumber(oldest[2])))}
"""


class _Redis:
    """One client (thread-safe connection pool) and one registered script per process."""

    _lock = threading.Lock()
    _script: Any = None
    _url: str | None = None

    @classmethod
    def script(cls) -> Any:
        with cls._lock:
            if cls._script is None or cls._url != settings.REDIS_URL:
                import redis  # the embedded default never needs the client

                client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=5)
                cls._script, cls._url = client.register_script(SLIDING_WINDOW), settings.REDIS_URL
            return cls._script


class SlidingWindowThrottle(throttling.SimpleRateThrottle):
    """DRF's decision (rate, key, window), taken in one Redis script when `REDIS_URL` is set.

    Placed last among a throttle's bases, so DRF's own subclasses (the scoped throttle sets its
    scope and rate in `allow_request`) run first and end up here instead of at the cache.
    """

    _wait: float | None = None
    duration: int  # set by SimpleRateThrottle.__init__ from the rate (untyped in DRF's stubs)
    num_requests: int

    def allow_request(self, request: Request, view: APIView) -> bool:
        if not settings.REDIS_URL:
            return super().allow_request(request, view)
        if self.rate is None:
            return True
        key = self.get_cache_key(request, view)
        if key is None:
            return True
        allowed, wait = _Redis.script()(
            keys=[KEY_PREFIX + key], args=[self.duration, self.num_requests, uuid.uuid4().hex]
        )
        self._wait = None if allowed else max(float(wait), 0.0)
        return bool(allowed)

    def wait(self) -> float | None:
        return self._wait if settings.REDIS_URL else super().wait()


class AtomicThrottleMixin(throttling.SimpleRateThrottle):
    """Without Redis: a per-process lock per client across DRF's read-decide-write."""

    def allow_request(self, request: Request, view: APIView) -> bool:
        if settings.REDIS_URL:  # one Redis script decides (SlidingWindowThrottle)
            return super().allow_request(request, view)
        user = getattr(request, "user", None)
        who = f"user:{user.pk}" if user is not None and user.is_authenticated else f"ip:{self.get_ident(request)}"
        lock = _LOCKS[zlib.crc32(f"{type(self).__name__}:{who}".encode()) % len(_LOCKS)]
        with lock:
            return super().allow_request(request, view)


class AnonRateThrottle(AtomicThrottleMixin, throttling.AnonRateThrottle, SlidingWindowThrottle):
    pass


class UserRateThrottle(AtomicThrottleMixin, throttling.UserRateThrottle, SlidingWindowThrottle):
    pass


class ScopedRateThrottle(AtomicThrottleMixin, throttling.ScopedRateThrottle, SlidingWindowThrottle):
    pass
