"""The feed as JSON, for a front end to poll; marking events seen.

``GET <prefix>/feed/<medium>/`` answers a page of the signed-in user's feed:
``{"events": [...], "cursor": "..." | null}``; query parameters ``cursor``,
``limit`` (at most ``feed.MAX_PAGE``), ``seen`` (``true``/``false``),
``include_expired`` and ``entity`` (``app_label.model/pk``: one of the
identities the resolver gives the user; the user itself by default). GET never
changes anything. ``POST <prefix>/feed/<medium>/seen/`` with ``events`` (ids,
form fields or a JSON body) marks them seen by the user's person, with Django's
CSRF protection. Anonymous requests get 401, another subscriber's feed 403,
bad parameters 400, an unknown medium 404: always a short JSON reason.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_protect

from . import feed, resolvers


class Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


def _flag(value: str | None, name: str) -> bool | None:
    if value is None or value == "":
        return None
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise Refused(400, f"{name} must be true or false")


def serialize(event: Any) -> dict[str, Any]:
    """An event of a feed page as JSON."""
    from django.contrib.contenttypes.models import ContentType

    actors = []
    for actor in event.actors.all():
        content_type = ContentType.objects.get_for_id(actor.entity_type_id)
        actors.append(
            f"{content_type.app_label}.{content_type.model}/{actor.entity_id}"
        )
    return {
        "id": event.pk,
        "source": event.source.name,
        "type": event.source.event_type,
        "event_source": event.event_source,
        "event_id": event.event_id,
        "subject": event.subject,
        "time": event.time.isoformat(),
        "expires_at": event.expires_at.isoformat() if event.expires_at else None,
        "actors": actors,
        "context": event.context,
        "seen": bool(getattr(event, "is_seen", False)),
    }


class FeedView(View):
    http_method_names = ["get"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        try:
            if not request.user.is_authenticated:
                raise Refused(401, "sign in to read a feed")
            return super().dispatch(request, *args, **kwargs)
        except Refused as refused:
            response = JsonResponse({"error": str(refused)}, status=refused.status)
            response["Cache-Control"] = "no-store"
            return response

    def medium(self, name: str) -> Any:
        from ..models import Medium

        medium = Medium.objects.filter(name=name).first()
        if medium is None:
            raise Refused(404, f"no medium {name[:100]!r}")
        return medium

    def entity(self, request: HttpRequest) -> Any:
        """The identity asked for (``entity``), if it is one of the user's."""
        identities = resolvers.identities_of(request.user)
        wanted = request.GET.get("entity")
        if not wanted:
            if not identities:
                raise Refused(403, "no feed for this user")
            return identities[0]
        try:
            model, key = resolvers.parse_entity(wanted)
        except ValueError as err:
            raise Refused(400, f"entity: {err}") from None
        for identity in identities:
            same = identity._meta.model is model
            if same and resolvers.entity_of(identity)[1] == key:
                return identity
        raise Refused(403, "not one of your feeds")

    def get(self, request: HttpRequest, medium: str) -> JsonResponse:
        found = self.medium(medium)
        entity = self.entity(request)
        limit_text = request.GET.get("limit") or str(feed.PAGE)
        if not limit_text.isdigit() or int(limit_text) < 1:
            raise Refused(400, "limit must be a whole number, 1 or more")
        try:
            page = feed.entity_events(
                found,
                entity,
                cursor=request.GET.get("cursor") or None,
                limit=int(limit_text[:6]),
                seen=_flag(request.GET.get("seen"), "seen"),
                include_expired=bool(
                    _flag(request.GET.get("include_expired"), "include_expired")
                ),
            )
        except feed.BadCursor as err:
            raise Refused(400, str(err)) from None
        response = JsonResponse(
            {"events": [serialize(event) for event in page], "cursor": page.cursor}
        )
        response["Cache-Control"] = "no-store"
        return response


@method_decorator(csrf_protect, name="post")
class FeedSeenView(FeedView):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, medium: str) -> JsonResponse:
        found = self.medium(medium)
        entity = self.entity(request)
        if request.content_type == "application/json":
            try:
                body = json.loads(request.body or b"{}")
            except ValueError:
                raise Refused(400, "the body is not JSON") from None
            ids = body.get("events") if isinstance(body, dict) else None
        else:
            ids = request.POST.getlist("events")
        if not isinstance(ids, list) or not ids or len(ids) > feed.MAX_PAGE:
            raise Refused(400, f"events: a list of 1 to {feed.MAX_PAGE} event ids")
        numbers = set()
        for pk in ids:
            text = str(pk) if isinstance(pk, int | str) and pk is not True else ""
            if pk is False or not text.isdigit() or int(text) >= 2**63:
                raise Refused(400, "events: event ids are whole numbers")
            numbers.add(int(text))
        # Only events of the sources this identity is subscribed to on this
        # medium: nobody marks (or learns the ids of) events of other feeds.
        sources = feed.subscribed_sources(found, entity).values("source_id")
        from ..models import Event

        mine = Event.objects.filter(pk__in=numbers, source_id__in=sources)
        return JsonResponse({"marked": feed.mark_seen(entity, mine)})
