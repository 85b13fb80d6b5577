"""The one exception type users see: a one-line message naming the file and the problem."""


class LeveError(Exception):
    """A user-facing error. The CLI prints ``error: <message>`` and exits with status 1."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
