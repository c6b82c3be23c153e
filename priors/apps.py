from django.apps import AppConfig


class PriorsConfig(AppConfig):
    name = "priors"
    verbose_name = "Relevant priors"
