"""`python -m bot` is the `wirewatch` command."""

import sys

from .cli import main

sys.exit(main())
