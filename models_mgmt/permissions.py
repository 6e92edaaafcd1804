"""The one place permission guards live: object permissions on AI models (django-guardian) and
the global permissions of the role groups.

`has_model_perm` answers; `require_model_perm` is the guard a service calls before a change;
`model_perms_of` lists what a user holds.

Within one HTTP request (`PermissionScopeMiddleware`) every guard asks one guardian
`ObjectPermissionChecker` per user, which queries a model's object permissions once (2 queries)
and answers every later check on that model from memory: the lookup that proves a model visible
and the service's guard before the change cost 2 queries together, not 2 each. Outside a request
(commands, the worker, tests calling services) each check asks the database afresh.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.contrib.auth.models import AnonymousUser, User
from django.http import HttpRequest, HttpResponse
from guardian.core import ObjectPermissionChecker

from models_mgmt.choices import PERM_VIEW, ROLE_OBJECT_PERMS, Role
from models_mgmt.errors import Forbidden
from models_mgmt.models import AIModel

APP = "models_mgmt"
# Who a request or command acts as (the project uses Django's default user model).
UserLike = User | AnonymousUser


_checkers: ContextVar[dict[int, ObjectPermissionChecker] | None] = ContextVar("permission_checkers", default=None)


@contextmanager
def permission_scope() -> Iterator[None]:
    """One permission checker per user for the duration of the block (an HTTP request)."""
    token = _checkers.set({})
    try:
        yield
    finally:
        _checkers.reset(token)


class PermissionScopeMiddleware:
    """Opens a `permission_scope` around each request (settings.MIDDLEWARE)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        with permission_scope():
            return self.get_response(request)


def _checker(user: User) -> ObjectPermissionChecker:
    scope = _checkers.get()
    if scope is None:
        return ObjectPermissionChecker(user)
    checker = scope.get(user.pk)
    if checker is None or checker.user is not user:
        checker = scope[user.pk] = ObjectPermissionChecker(user)
    return checker


def _signed_in(user: UserLike | None) -> User | None:
    """The user when signed in and active, else None."""
    if user is None or isinstance(user, AnonymousUser) or not user.is_active:
        return None
    return user


def has_model_perm(user: UserLike | None, model: AIModel, codename: str) -> bool:
    """True when the user holds `codename` on this model, directly, through a group, or as superuser."""
    signed_in = _signed_in(user)
    return signed_in is not None and (signed_in.is_superuser or _checker(signed_in).has_perm(codename, model))


def can_view_model(user: UserLike | None, model: AIModel) -> bool:
    """View permission on this model, or the role-wide `view_aimodel` (what the list's filter accepts)."""
    return has_model_perm(user, model, PERM_VIEW) or has_global_perm(user, PERM_VIEW)


def has_global_perm(user: UserLike | None, codename: str) -> bool:
    """A role-wide permission such as `add_aimodel` or `change_dataset`."""
    signed_in = _signed_in(user)
    return signed_in is not None and signed_in.has_perm(f"{APP}.{codename}")


def require_model_perm(user: UserLike | None, model: AIModel, codename: str, action: str) -> User:
    """The guard of every model-scoped state change: Forbidden unless the user holds `codename`."""
    signed_in = _signed_in(user)
    if signed_in is None or not has_model_perm(signed_in, model, codename):
        raise Forbidden(f"You may not {action} on AI model '{model.name}'.")
    return signed_in


def require_global_perm(user: UserLike | None, codename: str, message: str) -> User:
    """The guard of a role-wide change; returns the signed-in user it let through."""
    signed_in = _signed_in(user)
    if signed_in is None or not signed_in.has_perm(f"{APP}.{codename}"):
        raise Forbidden(message)
    return signed_in


def model_perms_of(user: UserLike | None, model: AIModel) -> list[str]:
    """The codenames the user holds on this model, for clients that show or hide actions.

    One guardian checker answers all four (2 queries, none when the request already checked this model).
    """
    managed = ROLE_OBJECT_PERMS[Role.MAINTAINER]
    signed_in = _signed_in(user)
    if signed_in is None:
        return []
    if signed_in.is_superuser:
        return list(managed)
    held = set(_checker(signed_in).get_perms(model))
    return [c for c in managed if c in held]
