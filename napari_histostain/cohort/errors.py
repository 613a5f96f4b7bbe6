"""The error of cohort runs."""

from ..errors import HistostainError


class CohortError(HistostainError):
    """The cohort cannot run (no slides, output folder busy, no scheduler, bad options)."""
