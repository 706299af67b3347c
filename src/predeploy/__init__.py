"""predeploy: pre-deploy orchestration for PostgreSQL-backed applications."""

from importlib.metadata import PackageNotFoundError, version

from predeploy.errors import PredeployError

__all__ = ["PredeployError", "__version__"]

try:
    __version__ = version("predeploy")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
