"""SciPy, imported on first use: ``scipy.signal`` alone costs a worker seconds of CPU to import, and
a worker accepts connections (and answers ``/ready``) without it. Only the biometric algorithms need
it; they reach it through these functions, so the import happens when the first batch is computed
(in a worker thread, see ``living.biometrics``) - or earlier, when the shell warms it up in the
background once the worker listens (:func:`warm_up`; ``RESONANCE_BIOMETRICS_WARM_UP``).

Two threads asking at once is safe: Python's per-module import lock makes the second wait for the
first, and each module is imported once.
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType

MODULES = ("scipy.signal", "scipy.ndimage", "scipy.interpolate")
"""What the biometric algorithms use, in the order :func:`warm_up` imports them."""


@cache
def _module(name: str) -> ModuleType:
    return importlib.import_module(name)


def signal() -> ModuleType:
    """``scipy.signal`` (filter design, ``find_peaks``)."""
    return _module("scipy.signal")


def ndimage() -> ModuleType:
    """``scipy.ndimage`` (running maximum and minimum)."""
    return _module("scipy.ndimage")


def interpolate() -> ModuleType:
    """``scipy.interpolate`` (cubic splines)."""
    return _module("scipy.interpolate")


def warm_up() -> None:
    """Import everything the algorithms use, so the first batch does not pay for it."""
    for name in MODULES:
        _module(name)


def warm() -> bool:
    """Whether every module is imported already."""
    return _module.cache_info().currsize == len(MODULES)
