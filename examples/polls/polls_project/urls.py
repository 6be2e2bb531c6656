from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("cloudevents/", include("django_cloudevents_bridge.urls")),
    path("", include("polls.urls")),
]
