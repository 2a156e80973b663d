"""Runs a script's click command from the project's environment (standard library only).

The scripts work without activating .venv: when the command cannot be imported by the
Python that started the script, it runs again under the checkout's .venv/bin/python.
"""

import importlib
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"


def run(target: str, prog_name: str) -> None:
    """Imports `module:command` and runs it as `prog_name`."""
    module, _, name = target.partition(":")
    sys.path.append(str(ROOT))  # the dev rig (devtools/) is used from the checkout
    try:
        command = getattr(importlib.import_module(module), name)
    except ModuleNotFoundError as exc:
        python = VENV / "bin" / "python"
        here = Path(sys.prefix).resolve() == VENV.resolve()
        if python.exists() and not here and not os.environ.get("PRCAPTURE_SHIM"):
            os.environ["PRCAPTURE_SHIM"] = "1"
            os.execv(python, [str(python), sys.argv[0], *sys.argv[1:]])
        print(
            f"Error: {prog_name} cannot import {exc.name!r} with {sys.executable}; "
            "run `make install` (it creates .venv with the dev extra)",
            file=sys.stderr,
        )
        sys.exit(1)
    command(prog_name=prog_name)
