"""Fixtures for rendering: a source group with two sources, a medium, styles."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from django_cloudevents_bridge.subscriptions import (
    ContextRenderer,
    Event,
    Medium,
    RenderingStyle,
    Source,
    SourceGroup,
)

_ids = itertools.count(1)


@pytest.fixture
def group(db) -> SourceGroup:
    return SourceGroup.objects.create(name="polls", display_name="Polls")


@pytest.fixture
def voted(group) -> Source:
    return Source.objects.create(
        name="voted", display_name="Vote cast", group=group, event_type="poll.voted"
    )


@pytest.fixture
def closed(group) -> Source:
    return Source.objects.create(
        name="closed", display_name="Poll closed", group=group, event_type="poll.closed"
    )


@pytest.fixture
def style(db) -> RenderingStyle:
    return RenderingStyle.objects.create(name="short", display_name="Short")


@pytest.fixture
def medium(style) -> Medium:
    return Medium.objects.create(
        name="email", display_name="E-mail", channel="email", rendering_style=style
    )


def event(source: Source, context: Any = None, **fields: Any) -> Event:
    """A stored event of ``source`` with ``context`` as its data."""
    return Event.objects.create(
        source=source,
        event_source="/tests",
        event_id=str(next(_ids)),
        context={} if context is None else context,
        **fields,
    )


def renderer(style: RenderingStyle, **fields: Any) -> ContextRenderer:
    fields.setdefault("name", f"renderer-{next(_ids)}")
    return ContextRenderer.objects.create(rendering_style=style, **fields)
