"""The ``mirrorflow`` command: one entry point, one subcommand per part of the appliance."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _numba_cache() -> None:
    """numba compiles on first use in every process: keep the result in a writable cache."""
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    state = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    candidates = [Path(state) / "mirrorflow" / "numba", Path("/tmp") / f"mirrorflow-numba-{os.getuid()}"]
    for path in candidates:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(path, os.W_OK):
            os.environ["NUMBA_CACHE_DIR"] = str(path)
            return


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; `only="flows"` builds just that subcommand (a query should not pay
    ~1 s importing the probe, the collector and the demo)."""
    from appliance import __version__

    parser = argparse.ArgumentParser(
        prog="mirrorflow",
        description="NetFlow appliance for a switch mirror port: eBPF probe, collector, TUI.",
    )
    parser.add_argument("--version", action="version", version=f"mirrorflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    if only == "flows":
        from appliance.collector.query.cli import add_parser as add_flows_only

        add_flows_only(sub)
        return parser
    from appliance.collector.cli import add_collect_parser, add_decode_parser

    add_collect_parser(sub)
    add_decode_parser(sub)
    from appliance.collector.query.cli import add_parser as add_flows_parser

    add_flows_parser(sub)
    from appliance.collector.checkconfig import add_parsers as add_config_parsers

    add_config_parsers(sub)
    from appliance.tui.cli import add_parser as add_tui_parser

    add_tui_parser(sub)
    try:
        from appliance.probe.cli import add_parser as add_probe_parser
    except ImportError:  # the probe needs bcc only when it runs, but be safe
        add_probe_parser = None
    if add_probe_parser is not None:
        probe = add_probe_parser(sub)
        if probe.get_default("func") is None:
            from appliance.probe.cli import run as run_probe

            probe.set_defaults(func=run_probe)
    from appliance.demo.cli import add_parser as add_demo_parser

    add_demo_parser(sub)
    from appliance.warmcache import add_parser as add_warm_parser

    add_warm_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    if words[:1] == ["warm-cache"]:  # fills the cache its caller names: no default, checked before numba loads
        from appliance.warmcache import check_cache_dir

        if (status := check_cache_dir(words)) is not None:
            return status
    else:
        _numba_cache()
    parser = build_parser(only="flows" if words[:1] == ["flows"] else None)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
