"""`python -m monitor` runs the dtmon command line."""

from monitor.cli import main

main()
