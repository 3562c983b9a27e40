"""The `curvewatch` command: the trainer's commands (run, list, stop, resume, sweep, demo,
import: trainer.cli's one parser, under this name) and `ui`, which serves the dashboard."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from curvewatch.tracking.paths import RUNS_ENV, default_runs_dir
from curvewatch.trainer import cli as trainer_cli

from .ui import APP

#: what the checkout's .streamlit/config.toml sets, given as flags: `ui` runs from any folder.
#: No theme, as there: the page follows the browser's light or dark preference, and the
#: charts follow the page (dashboard/live_chart.py, chart_component/index.html).
STREAMLIT_OPTIONS = {
    "server.headless": "true", "server.fileWatcherType": "none", "server.runOnSave": "false",
    "browser.gatherUsageStats": "false", "client.toolbarMode": "minimal",
}


def add_ui(sub: Any) -> None:
    """The `ui` subparser (added to trainer.cli's parser)."""
    ui = sub.add_parser("ui", help="serve the dashboard for a runs directory",
                        description="Serve the Curvewatch dashboard (Streamlit) over the runs "
                                    "in --runs-dir until Ctrl-C.",
                        epilog=trainer_cli.exit_codes_text(trainer_cli.EXIT_OK,
                                                           trainer_cli.EXIT_USAGE))
    ui.add_argument("--runs-dir", metavar="DIR", help=trainer_cli.RUNS_HELP)
    ui.add_argument("--port", type=_port, default=8501, help="port to serve on")
    ui.add_argument("--host", default="127.0.0.1",
                    help="address to serve on; the dashboard can start, stop and delete runs, "
                         "so anything but localhost gives those powers to whoever reaches it")


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"--port must be an integer from 1 to 65535, got "
                                         f"{text!r}")
    return value


def streamlit_command(runs_dir: Path, port: int, host: str) -> tuple[list[str], dict[str, str]]:
    """The `streamlit run` argument list and environment that serve the dashboard over
    `runs_dir` (which the dashboard reads from $CURVEWATCH_RUNS)."""
    argv = [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.port", str(port), "--server.address", host]
    for name, value in STREAMLIT_OPTIONS.items():
        argv += [f"--{name}", value]
    return argv, {**os.environ, RUNS_ENV: str(runs_dir.resolve())}


def cmd_ui(args: argparse.Namespace) -> int:
    runs_dir = Path(args.runs_dir) if args.runs_dir else default_runs_dir()
    if not runs_dir.is_dir():
        what = "is not a folder" if runs_dir.exists() else "does not exist"
        raise trainer_cli.UsageError(
            f"runs directory {str(runs_dir)!r} {what}; give --runs-dir the folder your runs "
            f"are written to (default: ${RUNS_ENV}, else ./runs)")
    argv, env = streamlit_command(runs_dir, args.port, args.host)
    print(f"Curvewatch dashboard on http://{args.host}:{args.port} over {runs_dir.resolve()}",
          flush=True)
    os.execve(sys.executable, argv, env)  # Streamlit takes over this process: Ctrl-C stops it


def main(argv: Sequence[str] | None = None) -> int:
    return trainer_cli.main(argv, prog="curvewatch", extra={"ui": (add_ui, cmd_ui)})
