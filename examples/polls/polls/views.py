"""A tiny JSON API, enough for the demo to drive the project over real HTTP.

The API is CSRF-exempt because it is meant for scripts; ATOMIC_REQUESTS makes each
request one transaction, so a change and its CloudEvent commit together.
"""

import json

from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from django_cloudevents_bridge import log

from .models import Choice, Question


def body(request: HttpRequest) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}


@csrf_exempt
@require_POST
def create_question(request: HttpRequest) -> JsonResponse:
    data = body(request)
    text = str(data.get("question_text") or "").strip()
    if not text:
        return JsonResponse({"error": "question_text is required"}, status=400)
    question = Question.objects.create(question_text=text)
    for choice_text in data.get("choices") or []:
        question.choice_set.create(choice_text=str(choice_text))
    choices = list(question.choice_set.values("id", "choice_text"))
    return JsonResponse({"id": question.pk, "choices": choices}, status=201)


@csrf_exempt
@require_http_methods(["POST", "DELETE"])
def question_detail(request: HttpRequest, pk: int) -> JsonResponse:
    question = get_object_or_404(Question, pk=pk)
    if request.method == "DELETE":
        question.delete()
        return JsonResponse({"deleted": pk})
    text = str(body(request).get("question_text") or "").strip()
    if not text:
        return JsonResponse({"error": "question_text is required"}, status=400)
    question.question_text = text
    question.save(update_fields=["question_text"])
    return JsonResponse({"id": pk, "question_text": text})


@csrf_exempt
@require_POST
def vote(request: HttpRequest, pk: int) -> JsonResponse:
    try:
        choice_id = int(body(request).get("choice"))
    except (TypeError, ValueError):
        return JsonResponse({"error": "choice must be a number"}, status=400)
    choice = get_object_or_404(
        Choice.objects.select_for_update(), pk=choice_id, question_id=pk
    )
    choice.votes += 1
    choice.save(update_fields=["votes"])
    log("polls.VoteCast", {"question": pk, "choice": choice.pk})
    return JsonResponse({"choice": choice.pk, "votes": choice.votes})
