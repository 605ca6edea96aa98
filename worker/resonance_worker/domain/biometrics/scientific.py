"""SciPy, imported on first use: ``scipy.signal`` alone costs a worker seconds of CPU to import, and
a worker accepts connections (and answers ``/ready``) without it. Only the biometric algorithms need
it; they reach it through these functions, so the import happens when the first batch is computed
(in a worker thread, see ``living.biometrics``) - or earlier, when the shell warms it up in the
background once the worker listens (:func:`warm_up`; ``RESONANCE_LIVING__BIO_WARM_UP``; ``/ready``
says which).

Two threads asking at once is safe: Python's per-module import lock makes the second wait for the
first, and each module is imported once.
"""

from __future__ import annotations

import importlib
from functools import cache
from types import ModuleType

MODULES = ("scipy.signal", "scipy.ndimage", "scipy.interpolate")
"""What the biometric algorithms use: the first use of any imports them all (``scipy.signal`` imports
most of the others anyway)."""


@cache
def _modules() -> dict[str, ModuleType]:
    return {name: importlib.import_module(name) for name in MODULES}


def signal() -> ModuleType:
    """``scipy.signal`` (filter design, ``find_peaks``)."""
    return _modules()["scipy.signal"]


def ndimage() -> ModuleType:
    """``scipy.ndimage`` (running maximum and minimum)."""
    return _modules()["scipy.ndimage"]


def interpolate() -> ModuleType:
    """``scipy.interpolate`` (cubic splines)."""
    return _modules()["scipy.interpolate"]


def warm_up() -> None:
    """Import everything the algorithms use, so the first batch does not pay for it."""
    _modules()


def warm() -> bool:
    """Whether every module is imported, completely (a module is in ``sys.modules`` while its import
    is still running)."""
    return _modules.cache_info().currsize > 0
