"""The `mrl` command line: `main(argv)` plus one thin module per command group."""
