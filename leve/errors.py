"""The one exception type users see: a one-line message naming the file and the problem."""

import reprlib

_RERAISED = "leve.errors.LeveError: "
MAX_MESSAGE = 2000  # characters: a message longer than this is cut (a last guard; values are cut by shown())


class LeveError(Exception):
    """A user-facing error. The CLI prints ``error: <message>`` and exits with status 1."""

    def __init__(self, message: str) -> None:
        # torch re-raises an error from a DataLoader worker as LeveError("Caught LeveError in DataLoader
        # worker process N.\nOriginal Traceback ...\nleve.errors.LeveError: <message>"): keep the one line
        if "\n" in message and _RERAISED in message:
            message = message.rsplit(_RERAISED, 1)[1].strip()
        if len(message) > MAX_MESSAGE:
            message = f"{message[:MAX_MESSAGE]}... ({len(message):,} characters in all)"
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxstring, _SHORT.maxother = 3, 160, 160
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 8


def shown(value: object, limit: int = 200, quote: bool = True) -> str:
    """``value`` as an error message shows it: its ``repr`` (``quote=False``: a printable string as it is), built
    without expanding more than a few levels and items (:mod:`reprlib`) and cut to ``limit`` characters.
    Every message that formats a value the user gave goes through this, so none is unbounded."""
    plain = isinstance(value, str) and not quote and value.isprintable()  # a line break or control: quoted
    text = value if plain and isinstance(value, str) else _SHORT.repr(value)
    return text if len(text) <= limit else f"{text[: max(limit - 3, 1)]}..."
