"""The `srs` command: ``main(argv) -> int``, one module per command group."""
