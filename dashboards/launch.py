"""How the dashboard is started: `streamlit run dashboards/app.py` with the options a hospital network needs.

`medbuilder up` (medbuilder/stack/up.py) and the browser test start it with `command()`; alone:
``python -m medbuilder.dashboards.launch --port 8501``. The options are given as flags, so they hold
whatever the current folder (Streamlit reads .streamlit/config.toml from there) and ~/.streamlit say.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP = Path(__file__).resolve().with_name("app.py")

OPTIONS = {
    "server.headless": "true",  # no browser opened on the server
    "browser.gatherUsageStats": "false",  # no usage statistics sent to Streamlit's servers
    "client.toolbarMode": "viewer",  # no Deploy button, no developer items (rerun, clear cache) in the menu
    "server.fileWatcherType": "none",  # the code does not change under a running dashboard
    "server.runOnSave": "false",
}


def command(port: int, address: str = "127.0.0.1") -> list[str]:
    """The command line that starts the dashboard on address:port."""
    flags = [part for key, value in {**OPTIONS, "server.port": str(port), "server.address": address}.items()
             for part in (f"--{key}", value)]
    return [sys.executable, "-m", "streamlit", "run", str(APP), *flags]


def environment(state: Path | None = None) -> dict[str, str]:
    """Variables the dashboard needs beside the caller's: where it keeps its session secret (auth.py)."""
    from medbuilder.dashboards.auth import STATE_ENV

    return {STATE_ENV: str(Path(state).resolve() / "dashboard")} if state is not None else {}


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Start the medbuilder dashboard (Streamlit).")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--address", default="127.0.0.1")
    args = parser.parse_args(argv)
    cmd = command(args.port, args.address)
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
