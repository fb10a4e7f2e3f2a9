"""`python -m tunelab` (used by `accelerate launch -m tunelab ...`)."""

import sys

from .cli import main

sys.exit(main())
