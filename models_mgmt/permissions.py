"""Object permissions on AI models (django-guardian) and the role groups that hold them."""

from __future__ import annotations

from typing import Any

from models_mgmt.choices import PERM_VIEW
from models_mgmt.models import AIModel

APP = "models_mgmt"


def has_model_perm(user: Any, model: AIModel, codename: str) -> bool:
    """True when the user holds `codename` on this model, directly, through a group, or as superuser."""
    if not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    return user.has_perm(f"{APP}.{codename}", model)


def model_perms_of(user: Any, model: AIModel) -> list[str]:
    """The codenames the user holds on this model, for clients that show or hide actions."""
    from models_mgmt.choices import ROLE_OBJECT_PERMS, Role

    return [c for c in ROLE_OBJECT_PERMS[Role.MAINTAINER] if has_model_perm(user, model, c)]


def can_view(user: Any, model: AIModel) -> bool:
    return has_model_perm(user, model, PERM_VIEW)
