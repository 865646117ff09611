"""The ``spikeedge`` command line: ``app`` joins one thin module per command."""
