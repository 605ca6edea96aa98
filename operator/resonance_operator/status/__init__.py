"""Pure status computation: the conditions, per-component readiness, the endpoint.

No I/O: the caller passes what it observed, what it applied and the time, and gets
the new status and the transitions worth an Event.

* ``readiness`` — how ready each workload is, from its live object;
* ``facts`` — everything the conditions are judged on, gathered once (``gather``);
* ``ready``, ``progressing``, ``degraded`` — one module per condition, each a
  ``condition(facts, stamp)`` returning a ``metav1.Condition`` with its
  ``observedGeneration``; change a condition's rules in its own module;
* ``monitoring``, ``autoscaling`` — the optional APIs the spec needs (the Prometheus
  Operator's monitors; KEDA for the connections target), said instead of skipped;
* ``conditions`` — looking conditions up by type (never by position) and the stamp;
* ``compute`` — the whole status, whether it ``changed``, and its ``transitions``.
"""
