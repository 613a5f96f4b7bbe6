"""Errors of the annotations package."""

from __future__ import annotations

from ..errors import HistostainError


class AnnotationError(HistostainError):
    """An annotation file or region cannot be used; the message says what to change."""
