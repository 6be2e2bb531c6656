from django.apps import AppConfig


class PollsConfig(AppConfig):
    name = "polls"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (registers the group handlers)
