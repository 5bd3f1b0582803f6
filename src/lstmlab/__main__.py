"""``python -m lstmlab`` (and ``torchrun -m lstmlab``) runs the command line."""

import sys

from .cli import main

sys.exit(main())
