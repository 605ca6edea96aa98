"""Soak: steady load with faults on a schedule (``python -m bench.soak.run``)."""
