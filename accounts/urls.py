from django.urls import include, path
from django.views.i18n import JavaScriptCatalog
from django_otp_webauthn.views import (
    BeginCredentialAuthenticationView,
    BeginCredentialRegistrationView,
)

from accounts import api, views
from teleradiology import converters  # noqa: F401 - registers <id:…>

# django-otp-webauthn's endpoints under the name its scripts reverse (otp_webauthn:…),
# with the completing steps audited.
webauthn = (
    [
        path(
            "registration/begin/",
            BeginCredentialRegistrationView.as_view(),
            name="credential-registration-begin",
        ),
        path(
            "registration/complete/",
            views.PasskeyRegistrationComplete.as_view(),
            name="credential-registration-complete",
        ),
        path(
            "authentication/begin/",
            BeginCredentialAuthenticationView.as_view(),
            name="credential-authentication-begin",
        ),
        path(
            "authentication/complete/",
            views.PasskeyAuthenticationComplete.as_view(),
            name="credential-authentication-complete",
        ),
        path(
            "jsi18n/",
            JavaScriptCatalog.as_view(packages=["django_otp_webauthn"]),
            name="js-i18n-catalog",
        ),
    ],
    "otp_webauthn",
)

urlpatterns = [
    path("login/", views.SignInView.as_view(), name="login"),
    path("logout/", views.sign_out, name="logout"),
    # The admin's and the browsable API's own sign-in and sign-out are ours.
    path("admin/login/", views.sign_in_redirect, name="admin-login"),
    path("admin/logout/", views.sign_out, name="admin-logout"),
    path("api-auth/login/", views.sign_in_redirect, name="api-auth-login"),
    path("api-auth/logout/", views.sign_out, name="api-auth-logout"),
    path("account/verify/", views.VerifyView.as_view(), name="account-verify"),
    path("account/security/", views.SecurityView.as_view(), name="account-security"),
    path("account/webauthn/", include(webauthn)),
    path("api/v1/auth/tokens/", api.TokenListIssueApi.as_view(), name="auth-tokens"),
    path("api/v1/auth/tokens/rotate/", api.TokenRotateApi.as_view(), name="auth-token-rotate"),
    path("api/v1/auth/tokens/<id:token_id>/", api.TokenRevokeApi.as_view(), name="auth-token"),
    path("api/v1/auth/logout/", api.LogoutApi.as_view(), name="auth-logout"),
    path(
        "api/v1/auth/users/<id:user_id>/mfa-reset/",
        api.MfaResetApi.as_view(),
        name="auth-mfa-reset",
    ),
]
