"""Signals to observe delivery (metrics, alerts); they never change routing.

``event_delivered`` and ``event_parked`` are sent with ``send_robust`` and the
keyword argument ``outbox_event`` (the
:class:`~django_cloudevents_bridge.models.OutboxEvent` row); ``event_received``
with ``event`` (the SDK event) and ``report`` (which targets ran, were skipped as
already done, failed, or were left to the worker: ``deferred``). It is sent once
per delivery, by the receiver: after the targets ran inline, or, in deferred
mode, once the event is stored (its targets run later, on the worker).
"""

from django.dispatch import Signal

event_delivered = Signal()  # an outbox event reached the sink
event_parked = Signal()  # an outbox event stopped being retried (dead-lettered)
event_received = Signal()  # the receiver dispatched or stored an event
