"""Your settings: the apps, middleware and settings the project adds.

This file is yours. The template ships it once and `cruft update` never changes it (it is
in pyproject.toml's [tool.cruft] skip list), so nothing here meets a merge. settings.py
imports it after its own settings and before the install's settings_local.py: a setting
here overrides the template's, and an install's local settings (secrets, hosts, database)
override both. Never add settings to settings.py below the settings_local import.
"""

# Your apps, after the template's own INSTALLED_APPS, e.g. ["blog"] (manage.py startapp blog).
EXTRA_APPS: list[str] = []
# Middleware after the template's own MIDDLEWARE.
EXTRA_MIDDLEWARE: list[str] = []
