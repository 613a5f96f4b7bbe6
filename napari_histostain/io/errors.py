"""The error of slide access."""

from ..errors import HistostainError


class SlideError(HistostainError):
    """A slide could not be opened or read; the message says what to do."""
