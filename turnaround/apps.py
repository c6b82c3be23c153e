from django.apps import AppConfig


class TurnaroundConfig(AppConfig):
    name = "turnaround"
