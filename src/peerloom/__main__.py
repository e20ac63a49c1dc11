"""`python -m peerloom` runs the `peerloom` command."""

from peerloom.cli import main

main()
