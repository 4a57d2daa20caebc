"""`python -m framework ...` is the `pipeline` command."""

from framework.cli.startup import main

main()
