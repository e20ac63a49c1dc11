"""`python -m peerloom.cli` runs the `peerloom` command."""

from peerloom.cli import main

main()
