"""`python -m tools.devstack [auth-conf [--check]]`."""

import sys

from tools.devstack.cli import main

sys.exit(main(sys.argv[1:]))
