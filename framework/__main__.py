"""`python -m framework ...` is the `pipeline` command."""

from framework.cli.app import main

main()
