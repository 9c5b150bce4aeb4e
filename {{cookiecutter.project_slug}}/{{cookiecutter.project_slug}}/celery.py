"""The project's Celery app: bin/workerctl.sh runs its worker, tasks.py's tasks belong to it.
The broker and the results are the install's own Redis, named in settings_local.py
(CELERY_BROKER_URL, CELERY_RESULT_BACKEND: Django settings prefixed CELERY_ are its)."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{{ cookiecutter.project_slug }}.settings")

app = Celery("{{ cookiecutter.project_slug }}")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    # A task is acknowledged once it has run, not when it was taken: one lost with its
    # worker (kill -9, a crash) runs again; a warm shutdown (a stop, a deploy) lets it finish.
    task_acks_late=True,
    worker_prefetch_multiplier=1,  # each process holds one task, never a queue of them
    broker_connection_retry_on_startup=True,  # at boot the worker waits for Redis
    result_expires=24 * 3600,
    # Redis hands an unacknowledged task to another worker after this: longer than any task.
    broker_transport_options={"visibility_timeout": 3600},
)
app.autodiscover_tasks()  # the tasks.py of every installed app
