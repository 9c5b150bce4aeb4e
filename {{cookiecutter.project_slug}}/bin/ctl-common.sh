# shellcheck shell=bash
# What bin/appctl.sh and bin/workerctl.sh share, sourced by both once SELF is set: their
# messages, their one wait, the LSB status of a pid file, and whether a process manager runs
# a unit or program of the install. Not a command of its own.

say() { printf '%s: %s\n' "$SELF" "$*"; }
die() {
    local status=$1
    shift
    printf '%s: %s\n' "$SELF" "$*" >&2
    exit "$status"
}

# Run a check every 0.1 s until it succeeds (status 0), or give up after SECONDS (status 1).
# wait_until SECONDS COMMAND [ARGS...]
wait_until() {
    local tenths=$(($1 * 10)) waited=0
    shift
    until "$@"; do
        ((waited >= tenths)) && return 1
        sleep 0.1
        waited=$((waited + 1))
    done
}

# pid_status LABEL PIDFILE: says whether LABEL runs, from the caller's running_pid; returns
# 0 running, 1 dead with its pid file left, 3 stopped (LSB).
pid_status() {
    local pid
    if pid=$(running_pid); then
        say "$1 is running (pid $pid)"
        return 0
    fi
    if [[ -e $2 ]]; then
        say "$1 is not running, but its pid file $2 is left (a crash?)"
        return 1
    fi
    say "$1 is stopped"
    return 3
}

# under_systemd UNIT: on a server under systemd, a start or stop by hand goes through the
# unit, so the process stays under its manager: the system part's polkit rule lets the
# project user start and stop the install's units (and no other). Not when systemd itself
# runs the script (it sets INVOCATION_ID), nor in a sandbox, nor where the unit is not installed.
under_systemd() {
    [[ ${PROCESS_MANAGER:-} == systemd && $SYSTEM_ROOT == / && -z ${INVOCATION_ID:-} ]] &&
        [[ -d /run/systemd/system ]] && systemctl cat "$1.service" >/dev/null 2>&1
}

# under_supervisor PROGRAM: under supervisor the install's own supervisord runs it; it is
# the project user's (its socket opens to no other account), so a start by hand asks it.
# Not when supervisord itself runs the script (it sets SUPERVISOR_ENABLED), nor when it does
# not run (status 4).
under_supervisor() {
    [[ ${PROCESS_MANAGER:-} == supervisor && -z ${SUPERVISOR_ENABLED:-} && -f $SUPERVISOR_CONF ]] || return 1
    command -v supervisorctl >/dev/null || return 1
    local status=0
    supervisorctl -c "$SUPERVISOR_CONF" status "$1" >/dev/null 2>&1 || status=$?
    ((status == 0 || status == 3)) # running or not: it answers and has the program
}
