"""Named events of the polls app (autodiscovered): the type is "polls.VoteCast"."""

from django_cloudevents_bridge import BaseEvent, ValidationError


class VoteCast(BaseEvent):
    """Someone voted: ``{"question": <pk>, "choice": <pk>}``."""

    def clean(self) -> None:
        missing = {"question", "choice"} - set(self.data)
        if missing:
            raise ValidationError(f"missing {', '.join(sorted(missing))}")
        if not all(isinstance(self.data[key], int) for key in ("question", "choice")):
            raise ValidationError("question and choice must be primary keys")
