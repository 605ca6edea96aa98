"""The typed ``ResonanceCluster`` API: spec/status models (``spec``), semantic
validation, the condition vocabulary (``conditions``), every Kubernetes kind the
operator touches with its path and verbs (``kinds``), and the observed-state
snapshot (``observed``). No I/O happens here."""
