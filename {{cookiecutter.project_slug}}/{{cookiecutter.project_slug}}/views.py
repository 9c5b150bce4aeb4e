"""Views: a home page that writes and reads the database, and a health check."""

from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .models import Visit


def home(request: HttpRequest) -> HttpResponse:
    Visit.objects.create()
    context = {"visits": Visit.objects.count(), "secure": request.is_secure()}
    return render(request, "{{ cookiecutter.project_slug }}/home.html", context)


def health(request: HttpRequest) -> HttpResponse:
    """200 when the app runs and its database answers; for load balancers and deploys."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse("ok\n", content_type="text/plain")
