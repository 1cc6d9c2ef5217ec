from uft.cli import main

main()
