"""`python -m tunelab` (used by `accelerate launch -m tunelab ...`)."""

import sys

from tunelab.cli import main

sys.exit(main())
