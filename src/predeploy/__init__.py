"""predeploy: pre-deploy orchestration for PostgreSQL-backed applications."""

from predeploy.errors import PredeployError

__all__ = ["PredeployError", "__version__"]

# The single source of the version (pyproject.toml reads it from here): reading it
# back through importlib.metadata would cost every command ~50 ms of start-up.
__version__ = "0.1.0"
