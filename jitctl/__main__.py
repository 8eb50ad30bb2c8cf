from jitctl.cli.root import main

main()
