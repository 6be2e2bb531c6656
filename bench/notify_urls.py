"""The bench's URLconf for ``bench.notify``: the receiver's include (unsubscribe)."""

from django.urls import include, path

urlpatterns = [path("cloudevents/", include("django_cloudevents_bridge.urls"))]
