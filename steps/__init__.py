"""MLproject entry points, run as ``python -m steps.NAME``: each parses its parameters and calls seqrec.workflow.

Importing this package first checks that the running Python has seqrec and its dependencies, so that a
shell without the project's environment gets one line saying what to do instead of a deep traceback.
"""

import importlib.util
import sys

_missing = [name for name in ("numpy", "pandas", "torch", "mlflow", "seqrec") if importlib.util.find_spec(name) is None]
if _missing:
    sys.exit(f"error: {sys.executable} has no {', '.join(_missing)}. Run the step in the project's environment: "
             "`source .venv/bin/activate` first (`make run` or `make test` creates .venv), or run it through make: "
             "make run ARGS='-e NAME -P key=value'")
