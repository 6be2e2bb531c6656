"""A placeholder renderer: the source's name and the event's JSON context.

Replaced by the rendering styles and context renderers (issue 16, item 4);
callers only rely on ``render(medium, events) -> {event: (text, html)}``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.utils.html import escape

if TYPE_CHECKING:
    from ..models import Event, Medium


def render(medium: Medium, events: Iterable[Event]) -> dict[Event, tuple[str, str]]:
    """``{event: (text, html)}``: the source's display name and the context."""
    rendered = {}
    for event in events:
        context = json.dumps(event.context, indent=2, sort_keys=True, default=str)
        title = str(event.source)
        rendered[event] = (
            f"{title}\n\n{context}\n",
            f"<h1>{escape(title)}</h1><pre>{escape(context)}</pre>",
        )
    return rendered
