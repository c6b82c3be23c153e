"""The append-only audit trail of every read or change of patient data."""

from __future__ import annotations

from typing import Any, NoReturn

from django.conf import settings
from django.db import models


class AuditImmutable(Exception):
    """Raised when code tries to alter or remove an audit record."""


class AuditEventQuerySet(models.QuerySet["AuditEvent"]):
    # Bulk paths bypass Model.save/delete, so they are closed here too.  The
    # database has triggers as well (see the migration) for anything that
    # goes around the ORM.
    def update(self, **kwargs: Any) -> NoReturn:
        raise AuditImmutable("Audit events cannot be updated.")

    def delete(self) -> NoReturn:
        raise AuditImmutable("Audit events cannot be deleted.")


class AuditEvent(models.Model):
    class Action(models.TextChoices):
        READ = "read", "Read"
        LIST = "list", "List"
        CREATE = "create", "Create"
        UPDATE = "update", "Update"
        DELETE = "delete", "Delete"
        TRANSITION = "transition", "State change"
        EXPORT = "export", "Export"
        LOGIN = "login", "Sign-in"
        LOGOUT = "logout", "Sign-out"
        LOGIN_FAILED = "login_failed", "Failed sign-in"
        LOCKOUT = "lockout", "Locked out"
        MFA = "mfa", "Multi-factor authentication"
        TOKEN_ISSUE = "token_issue", "API token issued"
        TOKEN_REVOKE = "token_revoke", "API token revoked"

    id = models.BigAutoField(primary_key=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    # PROTECT: rows are immutable, so a user with a history is deactivated,
    # never deleted.  The username is copied for readable exports.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    actor_username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=20, choices=Action.choices)
    object_type = models.CharField(max_length=100)
    object_id = models.CharField(max_length=64, blank=True)
    patient_id = models.CharField(max_length=64, blank=True, db_index=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    # The reading group whose data or people the event concerns, kept on the row so
    # that a group admin's view of the trail is one indexed filter (None: site-wide,
    # seen by site operators only).  A plain id, not a foreign key: the trail
    # outlives anything it names.
    reading_group_id = models.BigIntegerField(null=True, blank=True, db_index=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object_idx")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(
                    action__in=[
                        "read",
                        "list",
                        "create",
                        "update",
                        "delete",
                        "transition",
                        "export",
                        "login",
                        "logout",
                        "login_failed",
                        "lockout",
                        "mfa",
                        "token_issue",
                        "token_revoke",
                    ]
                ),
                name="audit_action_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_username} {self.action} {self.object_type}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AuditImmutable("Audit events cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AuditImmutable("Audit events cannot be deleted.")
