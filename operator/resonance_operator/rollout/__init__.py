"""Rollouts that respect WebSockets: pure replica math, the step machine and analysis.

Nothing here does I/O or reads a clock: every decision takes ``now`` and the
observed state as arguments and returns what to do next (including "wait N s"),
so the reconciler can apply it and requeue. See ``docs/rollouts.md``.

* the machine: ``plan.decide`` (what every strategy goes through), ``strategies``
  (each strategy's own steps: add a canary step kind here), ``decision`` (its
  answers), ``state`` (what it stores in ``status.rollout``), ``request`` (the
  rollout-action annotation);
* analysis: ``exposition`` (the metrics text format) → ``scrapes`` (per revision)
  → ``analysis`` (judgement, runs);
* ``canary``: replica and HPA splits.
"""
