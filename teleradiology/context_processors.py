"""Template context every page shares."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from network.selectors import user_roles


def nav(request: HttpRequest) -> dict[str, Any]:
    """The signed-in user's roles, for the navigation links (read only if a page uses them)."""
    return {"nav_roles": SimpleLazyObject(lambda: user_roles(user=request.user))}
