"""HTTP to the worker Pods themselves (not the Kubernetes API): ``/metrics`` scrapes
for analysis and connection counts, and ``/drain`` to hand a losing revision's
clients over. ``targets`` is the pure half (which Pods, what to send them);
``pods`` sends it. Every call has a timeout; a Pod that does not answer is
reported as such, never raised."""
