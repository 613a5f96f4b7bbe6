"""Exceptions whose message is shown to the user as is: say what went wrong and what to do."""


class HistostainError(Exception):
    """Base class of every user-facing error of napari-histostain."""


class Cancelled(HistostainError):
    """Long work stopped because the user cancelled it; nothing half-written was left."""
