"""The benchmark: ``./dev.sh bench`` (``python -m benchmarks``); see benchmarks/run.py."""
