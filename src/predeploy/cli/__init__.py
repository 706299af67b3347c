"""The command line: the `predeploy` program, its tasks (thin adapters) and their rendering."""
