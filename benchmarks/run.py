"""Run the paper's benchmark: ``python benchmarks/run.py --data DIR -o OUT [...]``.

The code lives in ``benchmarks/clams_benchmark/`` (not part of the installed ``pyclams``);
``python benchmarks/run.py -h`` lists the options.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clams_benchmark.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
