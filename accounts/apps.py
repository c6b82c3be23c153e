from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Sign-in, multi-factor authentication and API tokens"

    def ready(self) -> None:
        # django-axes announces a lockout by signal (its handler runs inside
        # authenticate()); the receiver audits it and alerts on repeats.
        from axes.signals import user_locked_out

        from accounts.services import lockout_record_from_signal

        user_locked_out.connect(lockout_record_from_signal, dispatch_uid="accounts.lockout")
