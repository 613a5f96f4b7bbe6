"""Errors of IHC quantification."""

from ..errors import Cancelled, HistostainError


class IHCError(HistostainError):
    """The image cannot be quantified as hematoxylin-DAB IHC; the message says why and what to do."""


class NotDabError(IHCError):
    """The image has no DAB component (for example an H&E slide)."""


class IHCCancelled(Cancelled):
    """Quantification was cancelled by the user; nothing was written."""
