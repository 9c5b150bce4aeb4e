# stage.project-baz.example (stage install): gunicorn, the app server.
# Rendered by `deploytool render` from etc/templates/gunicorn.conf.py.j2: edit the template, not this file.
"""Started, stopped and reloaded by bin/appctl.sh, by hand or by the supervisor
service. Signals: TERM = graceful stop, HUP = graceful reload
(re-reads this file), USR1 = reopen the logs (logrotate sends it).
"""

import ctypes
import gc
import os
import signal

from gunicorn.glogging import Logger

wsgi_app = "project_baz.wsgi:application"
chdir = "/home/djltest/project-baz.example/stage"

# HTTP for nginx's proxy_pass: nginx is the only client (it checks basic auth for /admin/).
# A unix socket in a folder only the project user and nginx's group may enter
# (/run/stage.project-baz.example.app, 2750): the folder is the guard. gunicorn chowns the socket to
# the user's own group after binding (nginx's group, inherited from the folder, is lost),
# so the socket itself is made 0777 (`umask` applies to the bind only): nginx's workers
# connect, and no other account gets through the folder to try.
bind = ["unix:/run/stage.project-baz.example.app/gunicorn.sock"]
umask = 0o000
backlog = 1024  # requests wait here during a reload (<= net.core.somaxconn)

# Sync workers, one request each: nginx buffers every request and response, so a slow
# client never holds one (gunicorn's own advice behind a buffering proxy), and no thread
# pool or GIL contention is paid per request (bench/benchmark.py). One per core and one
# more for the others' waits on the database (deploytool/sizing.py says why); env.conf's
# APP_WORKERS overrides (a database on another host: more waiting, more workers). Here
#   one per core of 2 and one more, within half of 4096 MB at 96 MB each: 3.
workers = 3
worker_class = "sync"

timeout = 60  # a worker stuck 60 s is replaced (nginx proxy_read_timeout is longer)
graceful_timeout = 30  # on stop/reload, 30 s for a worker to finish its requests
# Recycle workers, so that leaks stay bounded. A new worker imports the app afresh: ~0.3 s
# of CPU, which every 5000 requests cost a busy worker ~6% of its time for a light page
# (bench/benchmark.py); every 50000 it is under 1%.
max_requests = 50000
max_requests_jitter = 5000  # ... and workers are not all recycled at once

# nginx sets X-Forwarded-For/-Proto and overwrites what a client sent; trust them from it
# only (a unix socket: nginx on this host).
forwarded_allow_ips = "127.0.0.1"

# Runtime files in the run dir, made at boot by tmpfiles.d.
pidfile = "/run/stage.project-baz.example/gunicorn.pid"
# No control socket (gunicorn >= 25.1's gunicornc): bin/appctl.sh and the managers speak
# to the master with signals. Off, the master runs no thread and no asyncio loop for it
# and opens no socket (its default, ~/.gunicorn/gunicorn.ctl, would be shared by every
# install of the user; /home is read-only in the systemd unit anyway).
control_socket_disable = True
daemon = False  # in the foreground: the manager runs it so, appctl.sh start detaches

# Logs in the log dir (logs/); logrotate renames them and sends USR1.
# As uWSGI's: errors, and the requests answered 4xx or 5xx; nginx logs every request. A
# line for each request would cost ~45 us of Python apiece, 5% of a light page's time
# (bench/benchmark.py). gunicorn keeps its logger class across a reload (HUP): a change
# to ErrorsOnlyAccessLog takes effect at the next restart.
accesslog = "/var/log/djltest/project-baz.example/stage/gunicorn.access.log"
errorlog = "/var/log/djltest/project-baz.example/stage/gunicorn.error.log"
capture_output = True  # the app's print() and stray stderr go to errorlog too
loglevel = "info"


class ErrorsOnlyAccessLog(Logger):
    """gunicorn's logger, with access lines for 4xx and 5xx answers only."""

    def access(self, resp, req, environ, request_time):
        status = getattr(resp, "status_code", None)
        if status is None or status >= 400:
            super().access(resp, req, environ, request_time)


logger_class = ErrorsOnlyAccessLog


def pre_fork(server, worker):
    """The master's objects, frozen before each fork, stay shared with the workers: the
    collector's passes in a worker no longer touch (and so copy) their pages. 6 MiB less for
    3 workers, a twentieth of the app server (bench/benchmark.py; Python's gc.freeze docs)."""
    gc.freeze()


def on_reload(server):
    """A reload (HUP) replaces every worker: let the collector free what the previous
    configuration left, frozen at the last fork (the new workers are forked after this)."""
    gc.unfreeze()
    gc.collect()


def post_fork(server, worker):
    """A worker ends with its master: the kernel sends it TERM (a graceful stop) when the
    master dies, even by kill -9. A sync worker would otherwise notice only after up to
    timeout / 2 (30 s), and keep the listening socket meanwhile."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # 1: PR_SET_PDEATHSIG
    if os.getppid() != worker.ppid:  # the master died before that line
        os.kill(os.getpid(), signal.SIGTERM)


def post_worker_init(worker):
    """Log a worker that has imported the app and serves: gunicorn logs only its start."""
    worker.log.info("Worker ready (pid: %s)", worker.pid)


proc_name = "stage.project-baz.example"  # in ps, when setproctitle is installed
