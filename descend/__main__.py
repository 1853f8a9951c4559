from descend.cli.main import entry

entry()
