from django.apps import AppConfig
from django.db.models.signals import post_migrate


class NetworkConfig(AppConfig):
    name = "network"
    verbose_name = "Reading network"

    def ready(self) -> None:
        from network.roles import ensure_role_groups

        # After the last app migrates, so every permission row exists.
        post_migrate.connect(ensure_role_groups, dispatch_uid="network.ensure_role_groups")
