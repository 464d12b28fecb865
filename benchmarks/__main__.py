"""``python -m benchmarks``: what ``./dev.sh bench`` runs (see benchmarks/run.py)."""

import sys

from benchmarks.run import main

sys.exit(main())
