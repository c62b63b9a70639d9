"""``mirrorflow tui``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from appliance.tui.client import DEFAULT_URL

__all__ = ["add_parser", "run"]

EPILOG = """\
examples:
  mirrorflow tui                                   # the collector on this machine
  ssh -L 8787:127.0.0.1:8787 appliance; mirrorflow tui --url http://127.0.0.1:8787
  mirrorflow tui --interval 2 --export-dir /tmp

Press ? for the keys. The TUI reads only the collector's live API (docs/api.md): start
`mirrorflow collect` (its API is on 127.0.0.1:8787 unless --api says otherwise).
"""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("tui", help="live dashboard of the collector's API (Textual)", epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=DEFAULT_URL, help=f"the collector's live API (default {DEFAULT_URL})")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between updates (default 1)")
    p.add_argument("--export-dir", type=Path, default=None, help="where 'e' writes CSV/JSON (default: cwd)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    from appliance.tui.app import MirrorflowApp

    url = args.url if "://" in args.url else f"http://{args.url}"
    if args.interval <= 0:
        print("mirrorflow tui: --interval must be > 0", file=sys.stderr)
        return 2
    MirrorflowApp(url, interval=args.interval, export_dir=args.export_dir).run()
    return 0
