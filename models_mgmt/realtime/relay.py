"""Delivers persisted progress events to this process's websockets when there is no Redis.

The in-memory channel layer cannot carry a worker's events into the web server (another process), so on
the embedded default each web process runs one relay: every RELAY_INTERVAL_S it reads the
events of the models its sockets follow (one indexed query, whatever the number of sockets) and
hands them to the local groups. It reads a sliding window of recent rows and remembers what it
forwarded, so a transaction that commits late is still delivered; consumers drop duplicates by
`seq` and fetch any gap from the table, so delivery stays exact even if the relay misses a row.

With REDIS_URL set, workers push through channels_redis and no relay runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from datetime import timedelta
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from models_mgmt.models import ProgressEvent
from models_mgmt.realtime.events import job_group, model_group

logger = logging.getLogger(__name__)
RELAY_INTERVAL_S = 0.1
LOOKBACK = timedelta(seconds=10)  # longer than any progress transaction stays open


@database_sync_to_async
def _recent_events(model_ids: list[int], since: Any) -> list[tuple[int, int, int | None, dict]]:
    return list(
        ProgressEvent.objects.filter(model_id__in=model_ids, created_at__gte=since)
        .order_by("id")
        .values_list("id", "model_id", "job_id", "payload")
    )


class EventRelay:
    def __init__(self) -> None:
        self.followers: Counter[int] = Counter()
        self.forwarded: dict[int, Any] = {}  # event id -> when first seen, pruned after LOOKBACK
        self.task: asyncio.Task | None = None

    def follow(self, model_id: int) -> None:
        self.followers[model_id] += 1
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self._run())

    def unfollow(self, model_id: int) -> None:
        self.followers[model_id] -= 1
        if self.followers[model_id] <= 0:
            del self.followers[model_id]
        if not self.followers and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        layer = get_channel_layer()
        started = timezone.now()
        while self.followers:
            try:
                await self._forward(layer, started)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database may be briefly unavailable; try again next tick
                logger.exception("progress relay failed to read events")
            await asyncio.sleep(RELAY_INTERVAL_S)

    async def _forward(self, layer: Any, started: Any) -> None:
        now = timezone.now()
        # Events older than the relay itself were replayed by the consumers when they connected.
        since = max(now - LOOKBACK, started - timedelta(seconds=1))
        rows = await _recent_events(list(self.followers), since)
        for event_id, model_id, job_id, payload in rows:
            if event_id in self.forwarded:
                continue
            self.forwarded[event_id] = now
            message = {"type": "feed.event", "event": payload}
            if job_id is not None:
                await layer.group_send(job_group(job_id), message)
            await layer.group_send(model_group(model_id), message)
        cutoff = now - LOOKBACK - timedelta(seconds=5)
        for event_id in [i for i, seen in self.forwarded.items() if seen < cutoff]:
            del self.forwarded[event_id]


_relays: dict[int, EventRelay] = {}


def relay_for_this_loop() -> EventRelay:
    """One relay per event loop (a web process runs one; each test's communicator its own)."""
    loop = asyncio.get_running_loop()
    relay = _relays.get(id(loop))
    if relay is None:
        relay = _relays[id(loop)] = EventRelay()
    return relay


async def stop_all() -> None:
    for relay in list(_relays.values()):
        if relay.task is not None:
            relay.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await relay.task
    _relays.clear()
