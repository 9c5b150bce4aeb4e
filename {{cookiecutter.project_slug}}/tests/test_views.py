"""The pages a user opens first."""

import re

import pytest
from django.test import Client


@pytest.mark.django_db
def test_home_page_counts_visits(client: Client) -> None:
    first = client.get("/", secure=True, HTTP_HOST=_host())
    second = client.get("/", secure=True, HTTP_HOST=_host())
    assert first.status_code == 200
    assert first.context["visits"] + 1 == second.context["visits"]


@pytest.mark.django_db
def test_visits_lists_the_latest_fifty_and_writes_nothing(client: Client) -> None:
    for _ in range(60):  # the home page writes a visit each
        client.get("/", secure=True, HTTP_HOST=_host())
    response = client.get("/visits/", secure=True, HTTP_HOST=_host())
    assert response.status_code == 200
    assert len(response.context["latest"]) == 50 and response.context["total"] == 60
    assert response.content.count(b"<li>") == 50
    assert client.get("/visits/", secure=True, HTTP_HOST=_host()).context["total"] == 60  # read only


@pytest.mark.django_db
def test_health_answers_ok(client: Client) -> None:
    response = client.get("/health/", secure=True, HTTP_HOST=_host())
    assert response.status_code == 200
    assert re.fullmatch(rb"ok ([0-9a-f]{12}|unknown)\n", response.content)


def test_unknown_host_is_refused(client: Client) -> None:
    assert client.get("/health/", secure=True, HTTP_HOST="attacker.invalid").status_code == 400


def _host() -> str:
    from django.conf import settings

    return settings.ALLOWED_HOSTS[0]
