# stage.project-baz.example (stage install): local settings.
# Written once by `deploytool init` from etc/templates/settings_local.py.j2: local data, edit this file.
"""Local settings of the stage install of project-baz.example.

Mode 600, never tracked and never rewritten by a template update or `deploytool render`.
"""

from pathlib import Path

from deploytool.layout import Install

# The install root: this file is its etc/settings_local.py (Django imports it through the
# link <slug>/settings_local.py). Paths follow the checkout when it is copied or moved.
ROOT = Path(__file__).resolve().parent.parent
# The install as deploytool names it (etc/env.conf): where its unix sockets are, on a
# server (/run/<site>/) or in the sandbox of `deploytool up` alike.
INSTALL = Install.load(ROOT)

SECRET_KEY = "\u003cSECRET_KEY\u003e"
DEBUG = False
ALLOWED_HOSTS = ["stage.project-baz.example"]

# The install's own PostgreSQL cluster: host and port always explicit. In a fleet with a
# data host, its private address: copy this file to every host of the site (same database,
# same SECRET_KEY: a session is valid on every app host).
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": "127.0.0.1",
        "PORT": "60015",
        "NAME": "project_baz",
        "USER": "djltest",
        "PASSWORD": "\u003cPASSWORD\u003e",
        "CONN_MAX_AGE": 60,  # keep connections across requests of a worker
        "CONN_HEALTH_CHECKS": True,  # a kept connection the server closed is replaced, not failed
        # A database host that is down or silent costs a request a few seconds (then the
        # site's 500 page), not the kernel's minutes of retries: 3 s to connect, 3 s for a
        # kept connection's unanswered packet (the health check's).
        "OPTIONS": {"connect_timeout": 3, "tcp_user_timeout": 3000},
    }
}

# The install's own Redis copy, on a unix socket only the project user reaches.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"unix://{INSTALL.socket_of('redis')}?db=0",
        "KEY_PREFIX": "stage.project-baz.example",
    }
}
# The background worker's queue and results: the same Redis, its databases 1 and 2.
CELERY_BROKER_URL = f"redis+socket://{INSTALL.socket_of('redis')}?virtual_host=1"
CELERY_RESULT_BACKEND = f"redis+socket://{INSTALL.socket_of('redis')}?virtual_host=2"

# E-mail. With DEBUG off (stage, pro) Django mails the traceback of every server error to
# ADMINS, never to the client. The mail server and its login are this host's: fill them in.
ADMINS = []
SERVER_EMAIL = "errors@project-baz.example"  # From: of the error reports
DEFAULT_FROM_EMAIL = "webmaster@project-baz.example"  # From: of the site's own mails
EMAIL_HOST = "localhost"
EMAIL_PORT = 25  # 587 with EMAIL_USE_TLS (STARTTLS), 465 with EMAIL_USE_SSL
EMAIL_HOST_USER = ""
EMAIL_HOST_PASSWORD = ""  # a secret: local to this file (mode 600), like SECRET_KEY
EMAIL_USE_TLS = False
EMAIL_TIMEOUT = 10  # seconds: a mail server that does not answer never holds a request longer
# stage mails ADMINS and the addresses below only: the real users in data copied from pro
# never get a mail from staging. Empty the backend line to mail everyone.
EMAIL_BACKEND = "project_baz.mail.StageEmailBackend"
STAGE_EMAIL_ALLOWED: list[str] = []

STATIC_ROOT = ROOT / "static"
MEDIA_ROOT = ROOT / "media"
# Uploads are readable by the project user and nginx's group (media/ is setgid), no one else.
FILE_UPLOAD_PERMISSIONS = 0o640
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o750  # media/ is setgid: new folders inherit its group

# nginx terminates TLS and overwrites X-Forwarded-Proto with its own $scheme, so a
# client cannot fake it; Django trusts only that header to know a request is HTTPS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
CSRF_TRUSTED_ORIGINS = ["https://stage.project-baz.example"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
# nginx redirects HTTP to HTTPS already; Django's redirect is a second guard.
SECURE_SSL_REDIRECT = True
# Two years, as Mozilla's intermediate profile; nginx sends the same header for static files.
SECURE_HSTS_SECONDS = 63072000
# HSTS for this name only. includeSubDomains would make every subdomain of the domain
# HTTPS-only in browsers for two years (a host without HTTPS there becomes unreachable),
# and preload puts that in the browsers themselves: a one-way door the answer
# hsts_subdomains opens. check --deploy's findings about them are silenced for that reason.
SECURE_HSTS_INCLUDE_SUBDOMAINS = False
SECURE_HSTS_PRELOAD = False
SILENCED_SYSTEM_CHECKS = ["security.W005", "security.W021"]
