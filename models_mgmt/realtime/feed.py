"""Reads behind the websocket feeds (async wrappers over permission-filtered selectors)."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async

from models_mgmt import selectors
from models_mgmt.choices import LIVE_JOB_STATUSES
from models_mgmt.errors import NotFound
from models_mgmt.models import AIModel, ProgressEvent, TrainingJob
from models_mgmt.permissions import UserLike
from models_mgmt.realtime.events import job_payload

Stream = tuple[str, int]


@database_sync_to_async
def visible_model(user: UserLike, name: str) -> AIModel | None:
    try:
        return selectors.ai_model_get(user, name)
    except NotFound:
        return None


@database_sync_to_async
def visible_job(user: UserLike, job_id: int) -> TrainingJob | None:
    return selectors.training_job_list(user).filter(pk=job_id).first()


def _stream_events(key: Stream):
    kind, ident = key
    if kind == "job":
        return ProgressEvent.objects.filter(job_id=ident)
    return ProgressEvent.objects.filter(model_id=ident, job__isnull=True)


def _payloads(queryset: Any) -> list[dict[str, Any]]:
    return list(queryset.order_by("seq").values_list("payload", flat=True))


@database_sync_to_async
def events_between(key: Stream, after: int, before: int) -> list[dict[str, Any]]:
    """A stream's events with after < seq < before: the gap a consumer must fill."""
    return _payloads(_stream_events(key).filter(seq__gt=after, seq__lt=before))


def _current_state(job: TrainingJob) -> list[dict[str, Any]]:
    latest = ProgressEvent.objects.filter(job=job).order_by("-seq").values_list("payload", flat=True).first()
    if latest is not None:
        return [latest]
    # A job from before the feed existed: its row is the whole state (seq 0, nothing to resume).
    return [job_payload(job, "job.snapshot", 0, {})]


@database_sync_to_async
def job_catch_up(job_id: int, last_seq: int | None) -> list[dict[str, Any]]:
    """Without `last_seq` the current state; with it every event after it."""
    if last_seq is None:
        job = TrainingJob.objects.select_related("model", "version").get(pk=job_id)
        return _current_state(job)
    return _payloads(_stream_events(("job", job_id)).filter(seq__gt=last_seq))


@database_sync_to_async
def model_catch_up(
    model_id: int, job_id: int | None, last_seq: int | None, last_model_seq: int | None
) -> list[tuple[Stream, list[dict[str, Any]], int | None]]:
    """(stream, events to send, position to start from) for each stream of a model feed."""
    model = AIModel.objects.get(pk=model_id)
    own = ("model", model_id)
    streams: list[tuple[Stream, list[dict[str, Any]], int | None]]
    if last_model_seq is None:
        streams = [(own, [], model.event_seq)]
    else:
        streams = [(own, _payloads(_stream_events(own).filter(seq__gt=last_model_seq)), last_model_seq)]
    jobs = TrainingJob.objects.filter(model_id=model_id).select_related("model", "version")
    if job_id is not None and last_seq is not None:
        streams.append((("job", job_id), _payloads(_stream_events(("job", job_id)).filter(seq__gt=last_seq)), last_seq))
        for newer in jobs.filter(pk__gt=job_id).order_by("pk"):
            streams.append((("job", newer.pk), _payloads(_stream_events(("job", newer.pk))), 0))
        return streams
    current = jobs.filter(status__in=LIVE_JOB_STATUSES).first() or jobs.order_by("-pk").first()
    if current is not None:
        streams.append((("job", current.pk), _current_state(current), None))
    return streams
