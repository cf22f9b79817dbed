"""The harness version (a leaf module, so any room can record it without importing the package)."""

__version__ = "0.1.0"
