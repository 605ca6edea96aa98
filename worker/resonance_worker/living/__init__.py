"""The living core of a worker: thyroid, emotional states, resonance rooms, biometrics, the graph.

A layer between the transport and the stores (import-linter: ``transport > living > storage >
graph > eventlog | engines > domain``; it imports no aiohttp and nothing of the transport). The
algorithms are pure and live in ``resonance_worker.domain``; here they are given the worker's
pain, RPC calls, clock and stores:

==================  ==========================================================================
``core``            :class:`~.core.Living`: the services wired together, the RPC handlers, the
                    thyroid and room steps (engine round trips, publications, events)
``rpc``             the RPC method table (``state.report``, ``room.join``, ``bio.push``, ...)
``thyroid``         the thyroid service: the node's pain hooks, the adaptive limits, circuits
``pain``            :class:`~.pain.PainHooks` (what the node reports) and what each code means
``origin``          which WebSocket request a pain signal came from (the budgets' identities)
``limits``          the limits the node reads per use, fixed or adapted
``roster``          who is connected: written by the node, read here
``rooms``           rooms across workers, sans I/O: shared entries, the merge, the leader
``states``          people's smoothed states, self-reports, body samples, ``self.reflect``
``biometrics``      ``bio.push`` batches (typed, numpy) and the per-person streams
``graph``           the projector's run and the ``graph.*`` queries, through the circuit
``outbox``          events to the log and publications to channels, failures felt as pain
``docs``            shared Yjs documents (``doc.send``): open pycrdt documents, their log and
                    snapshot in the store, awareness, idle GC (messages and permissions:
                    ``domain.ydocs``; the store: ``engines.docs``)
==================  ==========================================================================

Where to add things:

- **an RPC method**: a handler method on :class:`~.core.Living` (or on a service it holds), and
  one line in :func:`~.rpc.living_methods`; document it in docs/protocol.md;
- **a biometric reading**: the reading in ``domain/biometrics/readings.py`` (emitted by the
  stream), published as it is; if it should feed something, a ``case`` in
  :meth:`~.core.Living.use_readings`;
- **a pain source**: ``domain.thyroid.PainSource``, and where the node or a service feels it;
- **something a person's data erase must reach**: :meth:`~.core.Living.forget` drops what this
  worker keeps of a person; the stores are ``living.storage`` (engine, event log, graph).
"""
