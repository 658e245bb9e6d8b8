from cahp_edge.cli import main

main()
