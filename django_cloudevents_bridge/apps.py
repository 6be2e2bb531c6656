from django.apps import AppConfig
from django.core.signals import request_started, setting_changed
from django.db.models.signals import post_migrate


class CloudEventsBridgeConfig(AppConfig):
    name = "django_cloudevents_bridge"
    verbose_name = "CloudEvents bridge"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from .emit import capture, changes, reset_handler
        from .emit.sources import connect_models
        from .middleware import on_request_started
        from .targets.named import autodiscover

        connect_models()
        capture.install()  # the trigger-captured models' triggers, for migrations
        changes.connect_models()  # loaded values kept where updates say what changed
        # A deleted model's capture functions are dropped after migrate.
        uid = "cloudevents_bridge.capture"
        post_migrate.connect(capture.after_migrate, sender=self, dispatch_uid=uid)
        autodiscover()
        # After named events: the watch target runs after their handlers.
        from .notifications import register_unsubscriber
        from .targets import watches  # registers the watch target

        register_unsubscriber("watch", watches.unsubscribe)
        # Subscriptions: the auth app's relations, and the target (after watches).
        from .subscriptions import resolvers
        from .targets import subscriptions

        resolvers.register_defaults()
        register_unsubscriber("subscription", subscriptions.unsubscribe)

        setting_changed.connect(reset_handler, dispatch_uid="cloudevents_bridge.reset")
        # The receiver answers without its trailing slash too (middleware.py).
        request_started.connect(
            on_request_started, dispatch_uid="cloudevents_bridge.slashless"
        )
