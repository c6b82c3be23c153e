"""API tokens: issue (password, and a second factor when owed), list, rotate, revoke;
sign-out; an admin's reset of a user's second factors."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, PermissionDenied
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.models import ApiToken
from teleradiology.api import client_ip, request_actor


class TokenSerializer(serializers.ModelSerializer[ApiToken]):
    """A token as its owner and their admins see it: never the secret."""

    prefix = serializers.SerializerMethodField()
    user = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "prefix", "user", "created", "expiry", "last_used"]
        read_only_fields = fields

    def get_prefix(self, token: ApiToken) -> str:
        return str(token.token_key)[:8]


class IssuedSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    token = serializers.CharField(help_text="The secret: shown only now.")
    expiry = serializers.DateTimeField()


def _issued(token: ApiToken, key: str) -> Response:
    return Response(
        {"id": token.pk, "token": key, "expiry": token.expiry}, status=status.HTTP_201_CREATED
    )


def _http_request(request: Request) -> Any:
    # django-axes marks the Django request (its middleware answers the lockout).
    return request._request


class TokenListIssueApi(APIView):
    """GET: the caller's live tokens (``?user=<username>``: a user the caller manages,
    for group admins and site operators).  POST: a new token for username + password
    (+ ``otp``, a code from the authenticator app or a recovery code, when the user has
    a second factor or it is required); locked out after repeated failures."""

    throttle_scope = "sign-in"

    def _issuing(self) -> bool:
        request = getattr(self, "request", None)  # None while the schema is generated
        return request is not None and request.method == "POST"

    def get_permissions(self) -> list[Any]:
        return [AllowAny()] if self._issuing() else [IsAuthenticated()]

    def get_authenticators(self) -> list[Any]:
        # Issuing is a sign-in: it takes credentials in the body, not a session
        # (which would also demand a CSRF token of a script).
        if self._issuing():
            return []
        return super().get_authenticators()

    class IssueInput(serializers.Serializer[Any]):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)
        otp = serializers.CharField(max_length=16, required=False, allow_blank=True, default="")

    def get_throttles(self) -> list[Any]:
        # The sign-in scope is for issuing only; listing is an ordinary call.
        if not self._issuing():
            self.throttle_scope = ""
        return super().get_throttles()

    @extend_schema(
        parameters=[OpenApiParameter("user", str, description="Username of a managed user.")],
        responses=TokenSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        owner: User | None
        username = request.query_params.get("user")
        actor = request_actor(request)
        assert actor is not None  # noqa: S101 - IsAuthenticated
        if username is None or username == actor.get_username():
            owner = actor
        else:
            owner = selectors.users_managed(user=actor).filter(username=username[:150]).first()
            if owner is None:
                raise NotFound()
        tokens = selectors.api_tokens_of(owner=owner)
        return Response(TokenSerializer(tokens, many=True).data)

    @extend_schema(
        request=IssueInput,
        responses={
            201: IssuedSerializer,
            400: OpenApiResponse(description="Bad credentials, or a second factor missing."),
            403: OpenApiResponse(description="A second factor must be enrolled first."),
            429: OpenApiResponse(description="Locked out after repeated failures."),
        },
        auth=[],
    )
    def post(self, request: Request) -> Response:
        data = self.IssueInput(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            token, key = services.api_token_issue_with_password(
                request=_http_request(request),
                username=data.validated_data["username"],
                password=data.validated_data["password"],
                otp=data.validated_data["otp"],
            )
        except services.SignInRefused as refused:
            # A lockout is answered 429 by django-axes' middleware (accounts.views.locked_out).
            return Response({"detail": str(refused)}, status=status.HTTP_400_BAD_REQUEST)
        except services.SecondFactorRequired as owed:
            code = status.HTTP_403_FORBIDDEN if owed.enrol else status.HTTP_400_BAD_REQUEST
            return Response({"detail": str(owed), "otp": ["required"]}, status=code)
        return _issued(token, key)


class TokenRotateApi(APIView):
    """POST with a token: a new token for its owner; the calling token is revoked."""

    @extend_schema(request=None, responses={201: IssuedSerializer})
    def post(self, request: Request) -> Response:
        if not isinstance(request.auth, ApiToken):
            raise PermissionDenied("Rotate with the token to replace (Authorization: Token …).")
        token, key = services.api_token_rotate(token=request.auth, ip_address=client_ip(request))
        return _issued(token, key)


class TokenRevokeApi(APIView):
    """DELETE: revoke one of the caller's tokens, or of a user the caller manages."""

    @extend_schema(responses={204: None})
    def delete(self, request: Request, token_id: int) -> Response:
        actor = request_actor(request)
        assert actor is not None  # noqa: S101
        token = selectors.api_token_get_managed(user=actor, token_id=token_id)
        if token is None:
            raise NotFound()
        reason = "revoked by owner" if token.user_id == actor.pk else "revoked by admin"
        services.api_token_revoke(
            actor=actor, token=token, ip_address=client_ip(request), reason=reason
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogoutApi(APIView):
    """POST: sign out.  With a token, that token is revoked; with a session, the
    session ends (the user's other tokens live on until they expire or are revoked)."""

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request) -> Response:
        actor = request_actor(request)
        assert actor is not None  # noqa: S101
        if isinstance(request.auth, ApiToken):
            services.api_token_revoke(
                actor=actor, token=request.auth, ip_address=client_ip(request), reason="sign-out"
            )
        else:
            services.sign_out(request=_http_request(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class MfaResetApi(APIView):
    """POST: remove every second-factor device of a user (who lost theirs), by their
    group's admin or a site operator; audited.  Another group's user is a 404."""

    @extend_schema(
        request=None,
        responses={
            200: inline_serializer("MfaReset", {"devices_removed": serializers.IntegerField()})
        },
    )
    def post(self, request: Request, user_id: int) -> Response:
        actor = request_actor(request)
        assert actor is not None  # noqa: S101
        target = selectors.users_managed(user=actor).filter(pk=user_id).first()
        if target is None:
            raise NotFound()
        removed = services.second_factor_reset(
            actor=actor, user=target, ip_address=client_ip(request)
        )
        return Response({"devices_removed": removed})
