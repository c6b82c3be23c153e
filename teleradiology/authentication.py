"""API authentication: DRF's token authentication, with the reader's profile."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.utils.translation import gettext_lazy as _
from rest_framework import authentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed


class TokenAuthentication(authentication.TokenAuthentication):
    """DRF's token authentication (same answers), reading the user's radiologist
    profile, if any, in the same statement: almost every request a reader makes
    asks for it (``network.selectors.radiologist_for_user``), and it is one join
    away from the token's user instead of a statement of its own."""

    def authenticate_credentials(self, key: str) -> tuple[User, Token]:
        try:
            token = Token.objects.select_related("user__radiologist").get(key=key)
        except Token.DoesNotExist:
            raise AuthenticationFailed(_("Invalid token.")) from None
        if not token.user.is_active:
            raise AuthenticationFailed(_("User inactive or deleted."))
        return token.user, token
