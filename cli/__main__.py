"""`python -m cli` is the `carehub` command."""

from cli.main import main

main()
