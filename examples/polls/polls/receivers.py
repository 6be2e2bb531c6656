"""The receiving side: group handlers for the events the broker delivers back."""

from django_cloudevents_bridge import register_group_handler
from django_cloudevents_bridge.bindings.jsonformat import to_json
from django_cloudevents_bridge.events import CloudEvent, new

from .models import SeenEvent


@register_group_handler(group=r"^(django\.orm\.|polls\.)")
def record(event: CloudEvent) -> None:
    """Remember every model and poll event (once per event, even if redelivered)."""
    SeenEvent.objects.create(
        event_id=event.get_id(),
        source=event.get_source(),
        type=event.get_type(),
        event=to_json(event).decode(),
    )


@register_group_handler(group=r"^polls\.VoteCast$")
def count_vote(event: CloudEvent) -> CloudEvent:
    """Answer a vote with a reply event; Knative's broker routes it on."""
    data = event.get_data() or {}
    return new(
        "polls.VoteCounted",
        data={"choice": data.get("choice"), "question": data.get("question")},
        subject=event.get_subject(),
    )
