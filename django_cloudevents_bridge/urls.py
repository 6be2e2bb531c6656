"""Mount with ``path("cloudevents/", include("django_cloudevents_bridge.urls"))``."""

from django.urls import path

from .receive.named import LogView
from .receive.pubsub_push import PubSubPushView
from .receive.views import ReceiverView

app_name = "cloudevents"

urlpatterns = [
    path("", ReceiverView.as_view(), name="receiver"),
    path("pubsub/", PubSubPushView.as_view(), name="pubsub"),
    path("log", LogView.as_view(), name="log"),
]
