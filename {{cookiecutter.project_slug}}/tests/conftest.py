"""Test settings: what differs from a running install, and why."""

from typing import Any

import pytest


@pytest.fixture(autouse=True)
def plain_static_storage(settings: Any) -> None:
    """Tests run without collectstatic, so there is no manifest of hashed names."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
