from django.contrib import admin

from .models import Choice, Question, SeenEvent


class ChoiceInline(admin.TabularInline):
    model = Choice
    extra = 1


@admin.register(Question)
class QuestionAdmin(admin.ModelAdmin):
    inlines = [ChoiceInline]
    list_display = ("question_text", "pub_date")


@admin.register(SeenEvent)
class SeenEventAdmin(admin.ModelAdmin):
    list_display = ("type", "event_id", "seen_at")
    list_filter = ("type",)
