"""deploytool: the layout of a dj-layout install (ports, paths, names) and the commands that use it.

Run it from the install root: ``python -m deploytool COMMAND``.
"""
