"""`python -m proxy` is `gateway`."""

import sys

from .cli import main

sys.exit(main())
