"""Signals to observe delivery (metrics, alerts); they never change routing.

Both are sent with ``send_robust`` and the keyword argument ``outbox_event`` (the
:class:`~django_cloudevents_bridge.models.OutboxEvent` row).
"""

from django.dispatch import Signal

event_delivered = Signal()  # an outbox event reached the sink
event_parked = Signal()  # an outbox event stopped being retried (dead-lettered)
