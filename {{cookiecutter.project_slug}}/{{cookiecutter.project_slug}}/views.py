"""Views: a home page that writes and reads the database, a read-only list of the latest
visits (a few queries and a template loop: a typical page, for the benchmark), and a
health check."""

from pathlib import Path

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .models import Visit


def home(request: HttpRequest) -> HttpResponse:
    Visit.objects.create()
    context = {"visits": Visit.objects.count(), "secure": request.is_secure()}
    return render(request, "{{ cookiecutter.project_slug }}/home.html", context)


def visits(request: HttpRequest) -> HttpResponse:
    """The 50 latest visits and their count: reads only."""
    context = {"latest": Visit.objects.order_by("-id")[:50], "total": Visit.objects.count()}
    return render(request, "{{ cookiecutter.project_slug }}/visits.html", context)


def git_revision(root: Path) -> str:
    """The commit checked out in root, read from .git once per process (no git run)."""
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head[:12]
        ref = head.removeprefix("ref: ")
        if (git / ref).is_file():
            return (git / ref).read_text().strip()[:12]
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(f" {ref}"):
                return line.split()[0][:12]
    except OSError:
        pass
    return "unknown"


# The code this process runs: `deploytool deploy` reads it in /health/ to know the new
# revision serves (workers import it afresh on every reload).
REVISION = git_revision(Path(settings.BASE_DIR))


def health(request: HttpRequest) -> HttpResponse:
    """200 when the app runs and its database answers, naming the code's revision; for
    load balancers and deploys."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return HttpResponse(f"ok {REVISION}\n", content_type="text/plain")
