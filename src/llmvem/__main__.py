from llmvem.cli.app import main

main()
