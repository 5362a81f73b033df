"""The showcase app: which interpreter serves this page, next to the host's.

Started by the launcher drv builds (`bin/flask_app`), which runs the pinned
interpreter from the store in isolated mode with exactly its closure on
sys.path.
"""

import argparse
import html
import json
import os
import platform
import shutil
import subprocess
import sys

from flask import Flask, Response

app = Flask(__name__)


def serving_interpreter():
    return {
        "path": sys.executable,
        "version": platform.python_version(),
        "implementation": platform.python_implementation(),
        "in_store": sys.executable.startswith(os.environ.get("NIX_STORE", "/store") + "/"),
    }


def host_interpreter():
    """The host's own python3, if there is one on the PATH outside the store."""
    store = os.environ.get("NIX_STORE", "/store") + "/"
    for directory in os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep):
        if not directory or directory.startswith(store):
            continue
        candidate = shutil.which("python3", path=directory)
        if candidate:
            try:
                out = subprocess.run(
                    [candidate, "-c", "import sys, platform; print(sys.executable); print(platform.python_version())"],
                    capture_output=True, text=True, timeout=10, check=True,
                ).stdout.split("\n")
                return {"path": out[0], "version": out[1]}
            except (OSError, subprocess.SubprocessError, IndexError):
                return {"path": candidate, "version": None}
    return None


def interpreters():
    return {"serving": serving_interpreter(), "host": host_interpreter()}


@app.get("/interpreter.json")
def interpreter_json():
    return Response(json.dumps(interpreters(), indent=2) + "\n", mimetype="application/json")


@app.get("/")
def index():
    data = interpreters()
    serving = data["serving"]
    host = data["host"]
    host_row = (
        f"<td>{html.escape(host['path'])}</td><td>{html.escape(str(host['version']))}</td>"
        if host else "<td colspan=2>none on this machine</td>"
    )
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>drv showcase</title></head>
<body>
<h1>Served by Python {html.escape(serving['version'])} from the store</h1>
<table border="1" cellpadding="6">
<tr><th></th><th>interpreter</th><th>version</th></tr>
<tr><th>serving this page</th><td>{html.escape(serving['path'])}</td><td>{html.escape(serving['version'])}</td></tr>
<tr><th>host python3</th>{host_row}</tr>
</table>
<p>Built by drv from pinned sources; the same data as <a href="/interpreter.json">/interpreter.json</a>.</p>
</body></html>
"""


def main(argv=None):
    parser = argparse.ArgumentParser(prog="flask_app", description="show which interpreter serves this app")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    app.run(host="127.0.0.1", port=args.port)


if __name__ == "__main__":
    main()
