"""Background tasks, run by the worker (bin/workerctl.sh): an example to start from, and the
view that queues it (routed in urls.py when the answer worker is celery)."""

import time

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from .celery import app
from .models import Visit


@app.task
def record_visit(seconds: float = 0.0) -> int:
    """Record a visit after ``seconds`` (at most 60: a task that takes a while); returns its id."""
    time.sleep(min(max(float(seconds), 0.0), 60.0))
    return Visit.objects.create().id


@csrf_exempt  # no form to take a token from, and it asks for no more than a page view does
@require_POST
def visit_later(request: HttpRequest) -> HttpResponse:
    """Queue a visit for the worker: 202 with the task's id. It takes no argument, so a
    visitor can never ask the worker for more than one row."""
    result = record_visit.delay()
    return HttpResponse(f"{result.id}\n", status=202, content_type="text/plain")
