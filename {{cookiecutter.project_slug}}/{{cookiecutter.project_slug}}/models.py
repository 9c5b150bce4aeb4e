"""A minimal model, so an install proves its database reads and writes."""

from django.db import models


class Visit(models.Model):
    """One page view of the home page."""

    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"visit at {self.at:%Y-%m-%d %H:%M:%S}"
