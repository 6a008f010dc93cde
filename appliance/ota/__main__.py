"""``python -m appliance.ota update|rollback|slots|commit|boot-check`` (before/without the top-level wiring)."""

from __future__ import annotations

from appliance.ota.cli import main

raise SystemExit(main())
