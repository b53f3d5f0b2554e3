"""The ``aekit`` command line."""

from aekit.cli.main import main

__all__ = ["main"]
