"""The version of aekit."""

__version__ = "0.1.0"
