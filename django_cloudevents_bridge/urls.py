"""Mount with ``path("cloudevents/", include("django_cloudevents_bridge.urls"))``."""

from django.urls import path, re_path

from .notifications.views import UnsubscribeView
from .receive.pubsub_push import PubSubPushView
from .receive.views import ReceiverView
from .subscriptions.views import FeedSeenView, FeedView
from .targets.named import LogView
from .watches.activation import ActivateView

app_name = "cloudevents"

urlpatterns = [
    path("", ReceiverView.as_view(), name="receiver"),
    path("pubsub/", PubSubPushView.as_view(), name="pubsub"),
    # <prefix>/log as documented, and log/ like the other two.
    re_path(r"^log/?\Z", LogView.as_view(), name="log"),
    path("unsubscribe/<str:token>/", UnsubscribeView.as_view(), name="unsubscribe"),
    path("feed/<slug:medium>/", FeedView.as_view(), name="feed"),
    path("feed/<slug:medium>/seen/", FeedSeenView.as_view(), name="feed-seen"),
    path(
        "watches/activate/<str:signed>/",
        ActivateView.as_view(),
        name="watch-activate",
    ),
]
