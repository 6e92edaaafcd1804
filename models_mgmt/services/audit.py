from __future__ import annotations

from django.contrib.auth.models import User
from django.db import models

from models_mgmt.models import AIModel, AuditEvent
from models_mgmt.permissions import UserLike


def audit_record(
    *,
    actor: UserLike | None,
    action: str,
    obj: models.Model,
    ai_model: AIModel | None = None,
    before: dict | None = None,
    after: dict | None = None,
) -> AuditEvent:
    """Append one audit event. Call it inside the transaction of the change it records."""
    return AuditEvent.objects.create(
        actor=actor if isinstance(actor, User) else None,
        action=action,
        object_type=obj._meta.model_name or type(obj).__name__,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        ai_model=ai_model,
        ai_model_name=ai_model.name if ai_model else "",
        before=before,
        after=after,
    )
