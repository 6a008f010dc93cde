"""PyInstaller entry point: the frozen ``appliance`` is exactly ``python -m appliance``."""

from __future__ import annotations

import sys

from appliance.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
