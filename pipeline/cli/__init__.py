"""The ``hybridfleet`` command: one module per group of subcommands."""
