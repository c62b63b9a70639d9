"""``python -m appliance.probe`` = ``mirrorflow probe``."""

from __future__ import annotations

import sys

from appliance.probe.cli import main

sys.exit(main())
