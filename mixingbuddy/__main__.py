"""`python -m mixingbuddy`: the `mixingbuddy` command line."""

import sys

from .cli import main

sys.exit(main())
