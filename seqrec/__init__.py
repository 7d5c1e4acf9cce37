"""seqrec: session-based next-item recommendation, tracked, registered and served with MLflow."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("seqrec")
except PackageNotFoundError:  # imported from a model's code path without the package installed
    __version__ = "0+unknown"
