"""One exception type for problems the user can fix (bad file, bad flag, bad tensor).

The CLI prints its message and exits with status 2 instead of showing a traceback, so every message
must say what was wrong, where (file, tensor, field) and, when it helps, what to do.
"""


class SlimlabError(Exception):
    """A user-facing error: bad input, bad configuration or an environment problem."""
