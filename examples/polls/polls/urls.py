from django.urls import path

from . import views

urlpatterns = [
    path("api/questions", views.create_question, name="create_question"),
    path("api/questions/<int:pk>", views.question_detail, name="question_detail"),
    path("api/questions/<int:pk>/vote", views.vote, name="vote"),
]
