"""Settings of {{ cookiecutter.project_name | replace("\\", "\\\\") | replace('"', '\\"') }}: what every install shares.

Everything local to an install (SECRET_KEY, DEBUG, ALLOWED_HOSTS, DATABASES with host and
port, CACHES, security settings) lives in settings_local.py, a link to the install's
etc/settings_local.py (mode 600, never tracked), imported at the very end. The project's
own settings and apps go in custom_settings.py, which template updates never change.
"""

import sys
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent  # the install root

DEBUG = False
ALLOWED_HOSTS: list[str] = []

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "{{ cookiecutter.project_slug }}",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "{{ cookiecutter.project_slug }}.urls"
WSGI_APPLICATION = "{{ cookiecutter.project_slug }}.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files are part of the project (in git) and served by nginx from STATIC_ROOT.
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "static"
# Hashed names let nginx send far-future cache headers for /static/.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.ManifestStaticFilesStorage"},
}
# Media is local data: outside the code, never in git.
MEDIA_URL = "media/"
MEDIA_ROOT = BASE_DIR / "media"

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    # stderr is the app server's log file (logs/), rotated by logrotate.
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}

# Yours: custom_settings.py, which template updates never change. Its settings override
# the ones above; its apps and middleware come after the template's.
from .custom_settings import *  # noqa: E402,F403
from .custom_settings import EXTRA_APPS, EXTRA_MIDDLEWARE  # noqa: E402

INSTALLED_APPS = [*INSTALLED_APPS, *EXTRA_APPS]
MIDDLEWARE = [*MIDDLEWARE, *EXTRA_MIDDLEWARE]

# Last: the install's own settings (etc/settings_local.py) override everything above, so
# nothing may follow this import. Only a missing settings_local is tolerated; an error
# inside it must stop the app.
try:
    from .settings_local import *  # noqa: F403
except ModuleNotFoundError as error:
    if error.name != f"{__package__}.settings_local":
        raise
    print(
        "settings_local.py not found: run `bin/deploytool init --install-type dev|stage|pro`",
        file=sys.stderr,
    )
