"""WSGI entry point for the app server (uWSGI or gunicorn)."""

import os
from importlib import import_module

from django.conf import settings
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "{{ cookiecutter.project_slug }}.settings")

application = get_wsgi_application()

# The URLconf, and with it every view, is imported now rather than at the first request:
# a worker runs the code that was on disk when it started, even while a deploy checks out
# the next revision, and an import error there fails the start or reload, not a request.
import_module(settings.ROOT_URLCONF)
