from predeploy.cli.tasks import ns  # noqa: F401  (invoke loads the namespace from here)
