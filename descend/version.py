"""The package's version, in a module of its own so that any layer can read it without
importing the package's API (`descend/__init__.py`, which sits above everything)."""

__version__ = "0.3.0"
