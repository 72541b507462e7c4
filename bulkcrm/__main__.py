"""`python -m bulkcrm` runs the command line."""
from .cli import main

main()
