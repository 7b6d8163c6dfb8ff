"""Exceptions that carry a message meant for the person running the command.

The CLI prints these as one line and exits with the code given, never a traceback:
a user mistake (bad config, missing file) is not a crash.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem the user can fix; ``str(err)`` is the whole message."""

    exit_code = 2
    #: True when one place reports it (the service as it stops); threads that hit it stay silent
    quiet = False


class InputError(UserError):
    """A single input (image, WAV, recording) could not be read."""

    exit_code = 1


class SourceError(Exception):
    """A source could not be opened or stopped delivering; the source thread retries."""
