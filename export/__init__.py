"""Export Whisper weights for the Triton model: ``python -m export NAME [--from ...]``."""

from .errors import ExportError
from .exporter import default_repository, export_model

__all__ = ["ExportError", "default_repository", "export_model"]
