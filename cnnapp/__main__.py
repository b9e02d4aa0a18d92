from cnnapp.cli import main

main()
