"""Subcommands of the ``gdyn`` command line, one module each (see ``gdyn_jax.cli``)."""
