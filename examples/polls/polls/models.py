from django.db import models


class Question(models.Model):
    question_text = models.CharField(max_length=200)
    pub_date = models.DateTimeField("date published", auto_now_add=True)

    def __str__(self) -> str:
        return self.question_text


class Choice(models.Model):
    question = models.ForeignKey(Question, on_delete=models.CASCADE)
    choice_text = models.CharField(max_length=200)
    votes = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.choice_text


class SeenEvent(models.Model):
    """What the receiver's group handler saw (the demo prints these)."""

    event_id = models.CharField(max_length=255)
    source = models.CharField(max_length=1024)
    type = models.CharField(max_length=255)
    event = models.TextField()  # the JSON event format
    seen_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.type} {self.event_id}"
