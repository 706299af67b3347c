"""`python -m predeploy`: the same as the `predeploy` command."""

from predeploy.cli.program import main

main()
