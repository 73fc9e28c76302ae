"""The package version (one place: setup.cfg reads it through dali_relabel.__version__)."""

__version__ = "0.1.0"
