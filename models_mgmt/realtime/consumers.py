"""Websocket feeds of training progress: authenticate, authorize, relay — nothing else.

* `/ws/model-management/jobs/<id>/` follows one job and closes after its terminal event.
* `/ws/model-management/models/<name>/progress/` follows the model's current job, each next job as
  it starts, and the model's own events (version activated, alerts).

Query parameters for a reconnect: `lastSeq` (the last job event received; on the model feed with
`jobId`), and `lastModelSeq` on the model feed. Without them the feed starts with the current
state. Close codes: 4401 not authenticated (or the token expired), 4403 no such model/job for
this user; nothing is sent before such a close.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any
from urllib.parse import parse_qs

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from models_mgmt.choices import TERMINAL_JOB_STATUSES
from models_mgmt.models import AIModel, TrainingJob
from models_mgmt.permissions import UserLike
from models_mgmt.realtime import feed
from models_mgmt.realtime.events import job_group, model_group, pushes_through_channel_layer
from models_mgmt.realtime.relay import relay_for_this_loop

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_BAD_REQUEST = 4400


def _int_param(query: dict[str, list[str]], name: str) -> int | None:
    values = query.get(name)
    if not values:
        return None
    if not values[0].isdigit():
        raise ValueError(name)
    return int(values[0])


class FeedConsumer(AsyncJsonWebsocketConsumer):
    """Keeps, per stream, the last seq sent: duplicates are dropped and gaps filled from the table."""

    model_id: int
    job_id: int | None = None

    async def connect(self) -> None:
        self.sent: dict[tuple[str, int], int] = {}
        self.groups_joined: list[str] = []
        self.expiry: asyncio.Task | None = None
        self.following = False
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            return await self._refuse(CLOSE_UNAUTHENTICATED)
        try:
            query = parse_qs(self.scope.get("query_string", b"").decode("latin1"))
            params = {name: _int_param(query, name) for name in ("lastSeq", "jobId", "lastModelSeq")}
        except ValueError:
            return await self._refuse(CLOSE_BAD_REQUEST)
        target = await self.authorize(user)
        if target is None:
            return await self._refuse(CLOSE_FORBIDDEN)
        await self.accept()
        self._close_when_token_expires()
        for group in self.feed_groups():
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        if not pushes_through_channel_layer():
            relay_for_this_loop().follow(self.model_id)
            self.following = True
        await self.replay(params)

    async def _refuse(self, code: int) -> None:
        await self.accept()
        await self.close(code=code)

    def _close_when_token_expires(self) -> None:
        expires = self.scope.get("token_exp")
        if expires is None:
            return

        async def close_later() -> None:
            await asyncio.sleep(max(expires - time.time(), 0))
            await self.close(code=CLOSE_UNAUTHENTICATED)

        self.expiry = asyncio.get_running_loop().create_task(close_later())

    async def disconnect(self, code: int) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        if self.following:
            relay_for_this_loop().unfollow(self.model_id)
            self.following = False
        if self.expiry is not None:
            self.expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.expiry

    async def receive_json(self, content: Any, **kwargs: Any) -> None:
        """The feed is one-way; a client message is answered with a ping of the current position."""
        await self.send_json({"type": "feed.position", "seqs": {f"{k}:{i}": s for (k, i), s in self.sent.items()}})

    # --- delivery -------------------------------------------------------------------------------

    async def feed_event(self, message: dict[str, Any]) -> None:
        await self.deliver(message["event"])

    async def deliver(self, event: dict[str, Any]) -> None:
        key = self.stream_of(event)
        if key is None:
            return
        last = self.sent.get(key, 0)
        seq = event["seq"]
        if seq <= last:
            return  # already sent (replay, or both the relay and a push delivered it)
        if seq > last + 1:
            for missed in await feed.events_between(key, last, seq):
                await self.send_event(key, missed)
        await self.send_event(key, event)

    async def send_event(self, key: tuple[str, int], event: dict[str, Any]) -> None:
        if event["seq"] == 0:  # a snapshot of a job without events: state only, nothing to track
            await self.send_json(event)
            return
        if event["seq"] <= self.sent.get(key, 0):
            return
        self.sent[key] = event["seq"]
        await self.send_json(event)
        if self.job_id is not None and event.get("status") in TERMINAL_JOB_STATUSES and event["stream"] == "job":
            await self.close(code=1000)  # the job's feed ends with its terminal status

    def stream_of(self, event: dict[str, Any]) -> tuple[str, int] | None:
        raise NotImplementedError

    def feed_groups(self) -> list[str]:
        raise NotImplementedError

    async def authorize(self, user: UserLike) -> AIModel | TrainingJob | None:
        raise NotImplementedError

    async def replay(self, params: dict[str, int | None]) -> None:
        raise NotImplementedError


class JobFeedConsumer(FeedConsumer):
    async def authorize(self, user: UserLike) -> AIModel | TrainingJob | None:
        job = await feed.visible_job(user, int(self.scope["url_route"]["kwargs"]["job_id"]))
        if job is not None:
            self.job_id, self.model_id = job.pk, job.model_id
        return job

    def _job(self) -> int:
        assert self.job_id is not None, "authorize() sets the job before any event"
        return self.job_id

    def feed_groups(self) -> list[str]:
        return [job_group(self._job())]

    def stream_of(self, event: dict[str, Any]) -> tuple[str, int] | None:
        return ("job", self._job()) if event.get("stream") == "job" and event.get("jobId") == self.job_id else None

    async def replay(self, params: dict[str, int | None]) -> None:
        for event in await feed.job_catch_up(self._job(), params["lastSeq"]):
            await self.send_event(("job", self._job()), event)


class ModelFeedConsumer(FeedConsumer):
    async def authorize(self, user: UserLike) -> AIModel | TrainingJob | None:
        model = await feed.visible_model(user, self.scope["url_route"]["kwargs"]["name"])
        if model is not None:
            self.model_id = model.pk
        return model

    def feed_groups(self) -> list[str]:
        return [model_group(self.model_id)]

    def stream_of(self, event: dict[str, Any]) -> tuple[str, int] | None:
        if event.get("modelName") is None:
            return None
        if event.get("stream") == "model":
            return ("model", self.model_id)
        return ("job", event["jobId"])

    async def deliver(self, event: dict[str, Any]) -> None:
        key = self.stream_of(event)
        if key is not None and key[0] == "job" and key not in self.sent:
            # A job this socket has not seen yet (the next job started): send it from its start.
            self.sent[key] = 0
        await super().deliver(event)

    async def replay(self, params: dict[str, int | None]) -> None:
        streams = await feed.model_catch_up(self.model_id, params["jobId"], params["lastSeq"], params["lastModelSeq"])
        for key, events, position in streams:
            if position is not None:
                self.sent[key] = position
            for event in events:
                await self.send_event(key, event)
