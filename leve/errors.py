"""The one exception type users see: a one-line message naming the file and the problem."""


_RERAISED = "leve.errors.LeveError: "


class LeveError(Exception):
    """A user-facing error. The CLI prints ``error: <message>`` and exits with status 1."""

    def __init__(self, message: str) -> None:
        # torch re-raises an error from a DataLoader worker as LeveError("Caught LeveError in DataLoader
        # worker process N.\nOriginal Traceback ...\nleve.errors.LeveError: <message>"): keep the one line
        if "\n" in message and _RERAISED in message:
            message = message.rsplit(_RERAISED, 1)[1].strip()
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message
