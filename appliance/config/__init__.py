"""Configuration: typed settings and the layered loader."""

from __future__ import annotations

from appliance.config.profiles import ConfigSources, load_settings
from appliance.config.settings import Settings, auto_concurrency

__all__ = ["ConfigSources", "Settings", "auto_concurrency", "load_settings"]
