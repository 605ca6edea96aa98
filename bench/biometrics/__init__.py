"""Accuracy benchmark of the streaming biometrics core against HeartPy and NeuroKit2."""
