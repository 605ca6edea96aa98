"""One pass of the rollout machine for one cluster: observe → step → act.

* ``observe.gather`` (I/O, reads): the rollout state in ``status.rollout``; while a
  rollout is in flight the worker Pods and the ``/metrics`` of those of the
  revisions involved; once a losing revision's drain is due, its Pods' progress
  (``POST /drain`` is idempotent: to a Pod already draining it is a read). All of it
  in one frozen :class:`~resonance_operator.rollout_pass.step.Observation`.
* ``step.take`` (pure, ``now`` passed in): from the observation and this cluster's
  :class:`~resonance_operator.rollout_pass.step.Memory` (the analysis baseline), the
  :class:`~resonance_operator.rollout_pass.step.Pass`: the machine's decision
  (``rollout.plan.decide``), the new memory, the topology of revisions that decides
  which worker children exist, the status and Events, when to look again, and the
  drains to start. Nothing is mutated in place.
* ``act.carry_out`` (I/O, writes), after the reconciler applied the children: start
  the drain a promotion or rollback began (no Service selects the losing revision
  any more) and drop a handled annotation.

The machine's state lives in ``status.rollout``; only the baseline scrape of a
running analysis is memory, returned by each step for the caller to keep. After an
operator restart the first due measurement only takes a new baseline.

To add a rollout step, see ``rollout/strategies.py``; this package only gathers
what the machine needs and carries out what it decided.
"""
