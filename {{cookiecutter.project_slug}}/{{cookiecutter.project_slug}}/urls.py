"""URLs of {{ cookiecutter.project_name | replace("\\", "\\\\") | replace('"', '\\"') }}.

The template's own; the project's are in custom_urls.py.
"""

from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("visits/", views.visits, name="visits"),
    path("health/", views.health, name="health"),
    path("admin/", admin.site.urls),
    # Yours: custom_urls.py, which template updates never change.
    path("", include("{{ cookiecutter.project_slug }}.custom_urls")),
]

# The background worker's example (the answer worker: "celery", or "none" without one).
WORKER = "{{ cookiecutter.worker }}"
if WORKER == "celery":
    from .tasks import visit_later

    urlpatterns.insert(0, path("visits/later/", visit_later, name="visit_later"))
