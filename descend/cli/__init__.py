"""The ``descend`` command line: one module per sub-command, wired in `descend.cli.main`."""
