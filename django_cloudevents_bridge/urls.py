"""Mount with ``path("cloudevents/", include("django_cloudevents_bridge.urls"))``."""

from django.urls import path

from .receive.views import ReceiverView

app_name = "cloudevents"

urlpatterns = [
    path("", ReceiverView.as_view(), name="receiver"),
]
