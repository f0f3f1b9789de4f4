from cdl.cli import main

main()
