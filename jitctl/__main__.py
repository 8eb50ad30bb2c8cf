"""`python -m jitctl`: the same program as the `jitctl` command."""

from jitctl.cli.root import main

main()
