"""User-facing errors.

`InputError` is raised for anything the user gave us that we refuse (a bad trajectory, an
absurd size, an unreadable file). Every surface turns it into a clear message: the CLI prints
``error: ...`` and exits 2, the web app shows it as a ``gr.Error``. Anything else is a bug.
"""


class InputError(ValueError):
    """Invalid user input; the message is meant to be shown to the user as is."""
