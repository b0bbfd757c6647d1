from vidgan.cli import run_main

run_main()
