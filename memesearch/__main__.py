from memesearch.cli import main

main()
