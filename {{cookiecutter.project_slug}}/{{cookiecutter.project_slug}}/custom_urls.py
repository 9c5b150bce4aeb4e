"""Your URLs, served after the template's own (urls.py includes this module at the root).

This file is yours: `cruft update` never changes it (pyproject.toml's [tool.cruft] skip).
Add your apps' routes here, e.g.:

    from django.urls import include, path
    urlpatterns = [path("blog/", include("blog.urls"))]
"""

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
