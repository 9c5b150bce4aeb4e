# dev.project-baz.example (dev install): local settings.
# Written once by `deploytool init` from etc/templates/settings_local.py.j2: local data, edit this file.
"""Local settings of the dev install of project-baz.example.

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
DEBUG = True
ALLOWED_HOSTS = ["dev.project-baz.example"]

# SQLite file in the install's data/ folder: local data, outside the code.
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ROOT / "data" / "db.sqlite3",  # mode 600, in data/ (700)
        "OPTIONS": {
            # WAL: readers never wait for the writer, and a commit appends to the log
            # instead of rewriting pages (synchronous=NORMAL is durable in WAL but for the
            # last commits on a power cut; the online backup reads a consistent state all
            # the same). busy_timeout: a writer waits up to 5 s for the lock instead of
            # failing with "database is locked" at once.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000",
            # A transaction takes the write lock when it starts, not at its first write: two
            # transactions that read, then write, never deadlock into "database is locked".
            "transaction_mode": "IMMEDIATE",
        },
    }
}

# The install's own Redis copy, on a unix socket only the project user reaches.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": f"unix://{INSTALL.socket_of('redis')}?db=0",
        "KEY_PREFIX": "dev.project-baz.example",
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
# dev: every mail is a file in data/mail/, nothing is sent.
EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
EMAIL_FILE_PATH = ROOT / "data" / "mail"

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
CSRF_TRUSTED_ORIGINS = ["https://dev.project-baz.example"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
