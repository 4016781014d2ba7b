"""The one exception type a user sees: a one-line reason and a non-zero exit, never a traceback."""


class LlamasError(Exception):
    """A failure the user can act on. `str(err)` is the whole message, one line."""

    exit_code = 2
