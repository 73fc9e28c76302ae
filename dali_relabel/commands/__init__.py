"""Subcommands of the ``dali-relabel`` CLI (see ``dali_relabel.cli``)."""
