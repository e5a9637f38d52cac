"""Errors that the CLI turns into one line and exit code 2."""


class UserError(Exception):
    """A mistake in the user's input: a file, key or value. Printed as one line, exit code 2."""
