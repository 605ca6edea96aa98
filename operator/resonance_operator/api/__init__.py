"""The typed ``ResonanceCluster`` API: spec/status models, defaults, condition
vocabulary and the observed-state snapshot. No I/O happens here."""
