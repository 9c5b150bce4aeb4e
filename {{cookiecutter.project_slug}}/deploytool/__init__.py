"""deploytool: the layout of a dj-layout install (ports, paths, names) and the commands that use it.

Run it as ``bin/deploytool COMMAND`` (``--help`` lists them): it runs in the install's venv.

Module map, lowest row first. A module imports only from rows above its own, never from
its row or below: the names of an install are computed in one place (layout), every program
is started through one (proc), and each command module (init, install, deploy, ...) sits
above everything it uses. A test of the template parses the imports and keeps this true.

    errors, ports                          the one exception; the port block's arithmetic
    addresses, files, proc, progress, sizing, sockets  addresses; file writes; programs; steps; workers; /proc/net
    project, localsettings, inventory      the answers (etc/project.json); settings_local.py, parsed; fleet.ini
    layout                                 every name, path and port of an install
    certificates, dedicated, history, jobs  the certificate; the dedicated servers; data/deploy.json; jobs.ini
    backups, firewall, migrations, requirements  backups/; nftables rules; migration state; the venv's pins
    nginx, probe                           nginx: its sites, test, reload; asking the site and the app server
    render                                 etc/templates/ -> etc/ (`render`)
    configcheck, init, portmap, fleet, backup, maintenance  `check`; `init`; `ports`; fleet hosts; `backup`; the page
    install, watch                         the system and user parts (`install`); alerts (`watch`)
    acme, deploy, restore, sandbox, logs, manage  `cert`; `deploy`; `restore`; `up`, `down`, `status`; `logs`; `manage`
    __main__                               the command table
"""
