"""API authentication: expiring tokens (django-rest-knox), with the reader's profile."""

from __future__ import annotations

import binascii
from hmac import compare_digest
from typing import Any

from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object
from knox import auth
from knox.crypto import hash_token
from knox.settings import CONSTANTS
from rest_framework.exceptions import AuthenticationFailed

from accounts.models import ApiToken
from accounts.services import api_token_touch


class TokenAuthentication(auth.TokenAuthentication):
    """knox's token authentication ("Authorization: Token <key>", the same header as
    before), in one statement: the token is found by its prefix with its user and the
    user's radiologist profile, if any: almost every request a reader makes asks for
    it (``network.selectors.radiologist_for_user``), and it is one join away from the
    token's user instead of a statement of its own.

    Unlike knox's own, it deletes nothing while authenticating (knox reads all the
    user's tokens on every request to sweep expired ones): an expired token is simply
    refused; ``accounts.services.api_token_issue`` drops a user's expired tokens."""

    def authenticate_credentials(self, token: bytes) -> tuple[User, ApiToken]:
        invalid = _("Invalid token.")
        try:
            key = token.decode("utf-8")
            digest = hash_token(key)
        except (UnicodeDecodeError, TypeError, binascii.Error):
            raise AuthenticationFailed(invalid) from None
        now = timezone.now()
        candidates = ApiToken.objects.select_related("user__radiologist").filter(
            token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH]
        )
        for candidate in candidates:
            if not compare_digest(digest, candidate.digest):
                continue
            if candidate.expiry is not None and candidate.expiry <= now:
                raise AuthenticationFailed(_("Token expired."))
            if not candidate.user.is_active:
                raise AuthenticationFailed(_("User inactive or deleted."))
            api_token_touch(token=candidate, now=now)
            return candidate.user, candidate
        raise AuthenticationFailed(invalid)


class TokenScheme(OpenApiAuthenticationExtension):  # type: ignore[no-untyped-call]
    """The scheme in the OpenAPI schema: "Authorization: Token <key>" (named as DRF's
    token scheme was, so that clients of the schema see no change)."""

    target_class = TokenAuthentication
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return dict(
            build_bearer_security_scheme_object(
                header_name="Authorization",
                token_prefix="Token",  # noqa: S106 - the header scheme, not a secret
            )
        )
