from edgedetect.cli import main

main()
