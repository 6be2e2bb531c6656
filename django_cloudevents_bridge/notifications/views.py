"""The unsubscribe view: GET asks, POST unsubscribes (RFC 8058 one-click).

GET never changes anything (mail scanners follow links). POST is what a mail
provider sends for a one-click unsubscribe (body ``List-Unsubscribe=One-Click``)
and what the confirmation page's button sends; it is authenticated by the signed
token in the URL, so it is exempt from CSRF (a provider has no cookie).
"""

from __future__ import annotations

import logging

from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from . import unsubscribe

logger = logging.getLogger("django_cloudevents_bridge")

ONE_CLICK = "One-Click"


@method_decorator(csrf_exempt, name="dispatch")
class UnsubscribeView(View):
    http_method_names = ["get", "post"]
    template_name = "django_cloudevents_bridge/unsubscribe.html"

    def page(self, request: HttpRequest, state: str, status: int = 200) -> HttpResponse:
        response = TemplateResponse(
            request,
            self.template_name,
            {"state": state, "one_click": ONE_CLICK},
            status=status,
        )
        response["Cache-Control"] = "no-store"
        response["Referrer-Policy"] = "no-referrer"  # the token stays here
        return response

    def get(self, request: HttpRequest, token: str) -> HttpResponse:
        delivery = unsubscribe.verify(token)
        if delivery is None:
            return self.page(request, "invalid", 404)
        return self.page(request, "done" if delivery.unsubscribed_at else "confirm")

    def post(self, request: HttpRequest, token: str) -> HttpResponse:
        delivery = unsubscribe.verify(token)
        if delivery is None:
            return self.page(request, "invalid", 404)
        if request.POST.get("List-Unsubscribe") != ONE_CLICK:
            return self.page(request, "bad_request", 400)
        try:
            unsubscribe.unsubscribe(delivery)
        except Exception:  # a project's unsubscriber failed: nothing was changed
            logger.exception("Unsubscribing delivery %s failed", delivery.pk)
            return self.page(request, "failed", 503)
        return self.page(request, "done")
