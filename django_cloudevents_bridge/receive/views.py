"""ReceiverView: CloudEvents in over HTTP, status codes as Knative expects them."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DatabaseError, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from .. import conf, tracing, work
from ..bindings import http
from ..emit import emit
from ..events import CloudEvent
from ..exceptions import AuthUnavailable, BadEvent, NotAuthenticated
from ..models import TargetRun
from . import auth, dispatch, policies, store

logger = logging.getLogger("django_cloudevents_bridge")


def problem(status: int, reason: str, **headers: str) -> HttpResponse:
    """A short JSON error body: Knative copies it into its dead-letter extension."""
    response = JsonResponse({"error": reason[:200]}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@method_decorator(csrf_exempt, name="dispatch")
class ReceiverView(View):
    """POST CloudEvents here (binary, structured or batched mode).

    202: accepted, duplicates included. 200: accepted, with a reply event.
    400/413/415: the request is wrong and a retry will not help. 500: a target
    failed (its error is recorded; a redelivery runs only what failed). 503: our
    own transient trouble (database), so the sender retries.
    """

    http_method_names = ["post", "options"]
    cloudevents_receiver = True  # found by ReceiverSlashMiddleware

    def options(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponseBase:
        response = super().options(request, *args, **kwargs)
        # The CloudEvents webhook spec's abuse-protection handshake.
        origin = request.headers.get("WebHook-Request-Origin")
        if origin:
            response["WebHook-Allowed-Origin"] = origin
        return response

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            sender = self.authenticate(request)
            received = self.receive(request)
            policies.admit(sender, received)  # every event, before any is stored
            received = store.unexpired(received)
            tracing.count("received", "in", len(received))
            for event in received:  # every key checked before any is dispatched
                store.check(event)
        except BadEvent as err:
            return problem(err.status, str(err))
        except NotAuthenticated as err:
            return problem(401, str(err), WWW_Authenticate=err.challenge)
        except PermissionDenied as err:
            return problem(403, str(err) or "forbidden")
        except AuthUnavailable as err:
            return problem(
                503, "authentication unavailable", Retry_After=str(err.retry_after)
            )
        later = work.deferred()
        try:  # before any handler's work is stored for later
            for event in received:
                work.check(event, later)
        except DjangoValidationError as err:  # never stored for processing
            return problem(400, f"invalid event data: {'; '.join(err.messages)}")
        if later:
            return self.defer(received)
        reports: list[dispatch.Report] = []
        try:
            for event in received:
                reports.append(dispatch.Report())
                dispatch.deliver(event, reports[-1])
            return self.answer(reports, received)
        except DatabaseError as err:
            logger.warning("Receiver database error, asking for a retry: %s", err)
            # Targets that replied are done and will be skipped on the retry:
            # their replies go out now, as after a failed target.
            with contextlib.suppress(DatabaseError):
                self.send_owed(owed_replies(reports, received))
            return problem(503, "temporarily unavailable", Retry_After="1")

    def defer(self, received: list[CloudEvent]) -> HttpResponse:
        """Deferred mode: validate, store with due runs, 202; a worker runs them."""
        try:
            work.store(received)
        except DatabaseError as err:
            logger.warning("Receiver database error, asking for a retry: %s", err)
            return problem(503, "temporarily unavailable", Retry_After="1")
        return HttpResponse(status=202)

    def http_method_not_allowed(
        self, request: HttpRequest, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        response = problem(405, f"method {request.method} not allowed; use POST")
        allowed = [m.upper() for m in self.http_method_names if hasattr(self, m)]
        response["Allow"] = ", ".join(allowed)
        return response

    def receive(self, request: HttpRequest) -> list[CloudEvent]:
        """The events in the request; raises BadEvent when malformed."""
        options = conf.receiver()
        return http.from_request(request, options["MAX_BYTES"], options["MAX_BATCH"])

    def answer(
        self, reports: list[dispatch.Report], received: list[CloudEvent]
    ) -> HttpResponse:
        """500 if a target failed, else the acknowledgement (with a reply).

        Replies are owed until they go out through the handler: those of the
        targets that ran now, and those a done target kept from an earlier
        delivery whose response (which carried them) the sender may never have
        got. The response carries the first; the others go out through the
        handler. After a failure all of them do: their targets are done and will
        be skipped on the redelivery.
        """
        owed = owed_replies(reports, received)
        if any(report.failed for report in reports):
            self.send_owed(owed)
            return failure(reports)
        self.send_owed(owed[1:])
        return self.respond([owed[0].event] if owed else [], received)

    def authenticate(self, request: HttpRequest) -> str | None:
        """The sender's OIDC subject, if any; NotAuthenticated (401) or
        PermissionDenied (403) if it may not deliver events."""
        return auth.authenticate(request)

    def respond(
        self, replies: list[CloudEvent], received: list[CloudEvent]
    ) -> HttpResponse:
        """202 with no ce- headers, or 200 with the first reply in binary mode."""
        replies = not_echoed(replies, received)
        if not replies:
            return HttpResponse(status=202)
        first, extra = replies[0], replies[1:]
        # One HTTP response carries one event; the others are not dropped.
        self.forward(extra)
        headers, body = http.to_http(first)
        response = HttpResponse(body, status=200, content_type=None)
        if "Content-Type" not in headers:
            del response["Content-Type"]
        for name, value in headers.items():
            response[name] = value
        return response

    def forward(self, replies: list[CloudEvent]) -> None:
        """Reply events the response cannot carry, emitted through the handler."""
        if replies:
            logger.warning(
                "%d reply event(s) emitted through the handler instead", len(replies)
            )
            emit(replies)

    def send_owed(self, owed: list[dispatch.Owed]) -> None:
        """``forward`` the replies, and forget them where their targets kept them.

        One transaction: with the outbox, the replies' rows and the forgetting
        commit together, so a reply is neither lost nor sent twice this way.
        """
        if not owed:
            return
        with transaction.atomic():
            self.forward([reply.event for reply in owed])
            TargetRun.objects.settle_replies(
                [(reply.stored, reply.target) for reply in owed]
            )


def owed_replies(
    reports: list[dispatch.Report], received: list[CloudEvent]
) -> list[dispatch.Owed]:
    """Every reply owed by these reports, less any echo of a received event."""
    owed = [reply for report in reports for reply in report.owed]
    if not owed:  # the common case: no reply at all
        return []
    kept = {id(event) for event in not_echoed([o.event for o in owed], received)}
    return [reply for reply in owed if id(reply.event) in kept]


def not_echoed(
    replies: list[CloudEvent], received: list[CloudEvent]
) -> list[CloudEvent]:
    """The replies, less any received event handed back (a loop via the broker)."""
    if not replies:
        return []
    incoming = {(e.get_source(), e.get_id()) for e in received}
    return [r for r in replies if (r.get_source(), r.get_id()) not in incoming]


def failure(reports: list[dispatch.Report]) -> HttpResponse:
    """500 so the sender retries; 400 if every failure was a rejection of the data."""
    failed = {name for report in reports for name in report.failed}
    rejected = {
        name: reason for report in reports for name, reason in report.rejected.items()
    }
    if failed <= set(rejected):
        return problem(400, f"invalid event data: {next(iter(rejected.values()))}")
    return problem(500, f"{len(failed)} target(s) failed; retry")
