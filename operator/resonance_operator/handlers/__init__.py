"""kopf wiring: the only package that imports kopf.

``cluster`` registers the handlers on a fresh registry (so one process can run
several operators in tests); ``run`` starts kopf with the operator's settings.
"""
