"""``python -m hipsml.cli``: the hipsml command."""

import sys

from hipsml.cli import main

sys.exit(main())
