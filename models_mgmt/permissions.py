"""Object permissions on AI models (django-guardian) and the role groups that hold them."""

from __future__ import annotations

from typing import Any

from models_mgmt.models import AIModel

APP = "models_mgmt"


def has_model_perm(user: Any, model: AIModel, codename: str) -> bool:
    """True when the user holds `codename` on this model, directly, through a group, or as superuser."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.has_perm(f"{APP}.{codename}", model)


def model_perms_of(user: Any, model: AIModel) -> list[str]:
    """The codenames the user holds on this model, for clients that show or hide actions.

    One guardian checker answers all four (2 queries) instead of one `has_perm` each.
    """
    from guardian.core import ObjectPermissionChecker

    from models_mgmt.choices import ROLE_OBJECT_PERMS, Role

    managed = ROLE_OBJECT_PERMS[Role.MAINTAINER]
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return []
    if user.is_superuser:
        return list(managed)
    held = set(ObjectPermissionChecker(user).get_perms(model))
    return [c for c in managed if c in held]
