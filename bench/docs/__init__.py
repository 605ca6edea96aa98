"""The shared-documents benchmark (issue 20): ``python -m bench.docs.run``."""
