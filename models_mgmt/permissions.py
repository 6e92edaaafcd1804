"""The one place permission guards live: object permissions on AI models (django-guardian) and
the global permissions of the role groups.

`has_model_perm` answers; `require_model_perm` is the guard a service calls before a change;
`model_perms_of` lists what a user holds (one guardian checker for all four).
"""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser
from guardian.core import ObjectPermissionChecker

from models_mgmt.choices import ROLE_OBJECT_PERMS, Role
from models_mgmt.errors import Forbidden
from models_mgmt.models import AIModel

APP = "models_mgmt"
UserLike = AbstractBaseUser | AnonymousUser


def _active(user: UserLike | None) -> bool:
    return bool(user is not None and getattr(user, "is_authenticated", False) and getattr(user, "is_active", False))


def has_model_perm(user: UserLike | None, model: AIModel, codename: str) -> bool:
    """True when the user holds `codename` on this model, directly, through a group, or as superuser."""
    if not _active(user):
        return False
    assert user is not None
    return user.has_perm(f"{APP}.{codename}", model)


def has_global_perm(user: UserLike | None, codename: str) -> bool:
    """A role-wide permission such as `add_aimodel` or `change_dataset`."""
    return _active(user) and user is not None and user.has_perm(f"{APP}.{codename}")


def require_model_perm(user: UserLike | None, model: AIModel, codename: str, action: str) -> None:
    """The guard of every model-scoped state change: Forbidden unless the user holds `codename`."""
    if not has_model_perm(user, model, codename):
        raise Forbidden(f"You may not {action} on AI model '{model.name}'.")


def require_global_perm(user: UserLike | None, codename: str, message: str) -> None:
    if not has_global_perm(user, codename):
        raise Forbidden(message)


def model_perms_of(user: UserLike | None, model: AIModel) -> list[str]:
    """The codenames the user holds on this model, for clients that show or hide actions.

    One guardian checker answers all four (2 queries) instead of one `has_perm` each.
    """
    managed = ROLE_OBJECT_PERMS[Role.MAINTAINER]
    if not _active(user):
        return []
    assert user is not None
    if getattr(user, "is_superuser", False):
        return list(managed)
    held = set(ObjectPermissionChecker(user).get_perms(model))
    return [c for c in managed if c in held]
