from __future__ import annotations

from appliance.cli.main import main

raise SystemExit(main())
