"""A URLconf as projects write it, for the trailing-slash tests (test_receiver.py).

The receiver under several prefixes (a plain one, one with a converter, a regex,
nested includes, a prefix whose only route is the receiver), and a page of the
project's own that APPEND_SLASH still redirects.
"""

from django.http import HttpResponse
from django.urls import include, path, re_path

RECEIVER = "django_cloudevents_bridge.urls"


def page(request):
    return HttpResponse("a page")


urlpatterns = [
    path("page/", page),
    path("cloudevents/", include(RECEIVER)),
    path(
        "tenants/<slug:tenant>/events/",
        include((RECEIVER, "cloudevents"), namespace="tenant"),
    ),
    re_path(r"^legacy/hooks/", include((RECEIVER, "cloudevents"), namespace="legacy")),
    path(
        "api/",
        include(
            [
                path("v1/", include((RECEIVER, "cloudevents"), namespace="v1")),
                path("", include((RECEIVER, "cloudevents"), namespace="api")),
            ]
        ),
    ),
]


class UseThisURLconf:
    """A middleware choosing this URLconf per request (as django-hosts does)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        request.urlconf = __name__
        return self.get_response(request)
