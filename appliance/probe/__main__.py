"""``python -m appliance.probe`` = ``mirrorflow probe``."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
