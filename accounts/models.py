"""Expiring API tokens (django-rest-knox's token, with an id and a last-used time)."""

from __future__ import annotations

from django.db import models
from knox.models import AbstractAuthToken
from knox.settings import CONSTANTS


class ApiToken(AbstractAuthToken):
    """An API token: only its SHA-512 digest and its first characters (``token_key``,
    the lookup prefix) are stored; the secret is shown once, when it is issued.

    knox's own model keys rows by the digest; an integer id names a token in the API
    (revoking it) without handing the digest around, and ``last_used`` tells the
    owner and their admins which tokens are still in use."""

    id = models.BigAutoField(primary_key=True)
    digest = models.CharField(max_length=CONSTANTS.DIGEST_LENGTH, unique=True)
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        indexes = [models.Index(fields=["user", "expiry"], name="apitoken_user_expiry_idx")]

    def __str__(self) -> str:
        return f"{self.token_key[:8]}… ({self.user_id})"
