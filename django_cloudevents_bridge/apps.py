from django.apps import AppConfig
from django.core.signals import request_started, setting_changed


class CloudEventsBridgeConfig(AppConfig):
    name = "django_cloudevents_bridge"
    verbose_name = "CloudEvents bridge"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .emit import reset_handler
        from .emit.sources import connect_models
        from .middleware import on_request_started
        from .targets.named import autodiscover

        connect_models()
        autodiscover()
        # After named events: the watch target runs after their handlers.
        from .targets import watches  # noqa: F401  (registers the watch target)

        setting_changed.connect(reset_handler, dispatch_uid="cloudevents_bridge.reset")
        # The receiver answers without its trailing slash too (middleware.py).
        request_started.connect(
            on_request_started, dispatch_uid="cloudevents_bridge.slashless"
        )
