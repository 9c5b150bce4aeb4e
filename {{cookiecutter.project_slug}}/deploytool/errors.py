"""The one exception deploytool raises for a situation the user can fix."""


class DeployError(Exception):
    """What went wrong, with the value, and what to do. Printed as one line, exit status 2."""


class MissingProgram(DeployError):
    """A program the install needs is not installed (the message says how to install it)."""
