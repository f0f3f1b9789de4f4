from cdl_gitlab.cli import main

main()
