"""appliance: a personal AI-assistant gateway for small ARM edge boards."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
