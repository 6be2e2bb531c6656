"""Watch classes of the watch tests (registered on import, as any module's)."""

from __future__ import annotations

from django_cloudevents_bridge.watches import InstanceWatchEvent, WatchEvent

EDITED = "tests.question.edited"


class EditQuestion(InstanceWatchEvent):
    """Edits of one question (or, watched without one, of every question)."""

    event_type = EDITED
    content_type = "testapp.Question"


class EditInLanguage(WatchEvent):
    """Edits of questions in a language, optionally flagged ones only."""

    event_type = EDITED
    filters = {"language", "flagged"}


class ArticleTouched(InstanceWatchEvent):
    """A UUID-keyed model's objects."""

    event_type = "tests.article.touched"
    content_type = "testapp.Article"


class TagTouched(InstanceWatchEvent):
    """A string-keyed model's objects."""

    event_type = "tests.tag.touched"
    content_type = "testapp.Tag"


class Priced(WatchEvent):
    """Number and boolean filter values."""

    event_type = "tests.priced"
    filters = {"price", "instock", "sku", "region"}
