"""Pure status computation: conditions, per-component readiness, the endpoint.

Purely computational, no I/O: the caller passes what it observed, what it
applied and the current time, and gets the new status and the transitions
worth an Event.
"""
