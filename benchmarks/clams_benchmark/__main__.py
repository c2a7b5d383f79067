"""``python -m clams_benchmark`` (working directory ``benchmarks/``): see :mod:`.cli`."""

import sys

from .cli import main

sys.exit(main())
