"""`python -m evalharness`: the command line."""

import sys

from evalharness.cli import main

sys.exit(main())
