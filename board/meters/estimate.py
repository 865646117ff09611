"""The ``estimate`` meter: synaptic operations x energy per operation (Horowitz 45 nm pJ), for
machines without a sensor. Always labelled as an estimate. Standard library only.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Optional, Tuple

from ...errors import MeasurementError
from .base import PowerMeter, Reading

# Horowitz (45 nm) energy per operation in pJ, the figures NeuroBench estimates use.
PJ_PER_OP = {"fp32-mac": 4.6, "fp32-ac": 0.9, "int8-mac": 0.23, "int8-ac": 0.03}


class EstimateMeter(PowerMeter):
    """Energy *estimate*: synaptic operations x energy per operation (pJ). Not a measurement.

    Operations come from ``ops_source()`` (a callable returning the cumulative count, e.g. a
    session's synaptic operations) or are added with ``add(ops)``. ``pj_per_op`` is a number
    or a name of ``PJ_PER_OP`` (Horowitz 45 nm: int8-ac 0.03 pJ ... fp32-mac 4.6 pJ).
    """

    kind = "estimate"
    counter = True
    estimate = True

    def __init__(self, root: str = "/", pj_per_op="int8-ac",
                 ops_source: Optional[Callable[[], float]] = None, min_interval_s: float = 0.01):
        if isinstance(pj_per_op, str):
            if pj_per_op not in PJ_PER_OP:
                raise MeasurementError(f"unknown energy per op {pj_per_op!r}: give pJ or one of "
                                       f"{', '.join(PJ_PER_OP)}")
            self.op_label = pj_per_op
            pj_per_op = PJ_PER_OP[pj_per_op]
        else:
            self.op_label = "custom"
        self.pj_per_op = float(pj_per_op)
        self.ops_source = ops_source
        self.min_interval_s = float(min_interval_s)
        self._ops = 0.0
        self._lock = threading.Lock()
        self._last: Optional[Tuple[float, float]] = None

    def add(self, ops: float) -> None:
        """Count ``ops`` more synaptic operations (when no ``ops_source`` is given)."""
        with self._lock:
            self._ops += ops

    def _read(self) -> Reading:
        t = time.monotonic()
        with self._lock:
            ops = float(self.ops_source()) if self.ops_source is not None else self._ops
        energy_j = ops * self.pj_per_op * 1e-12
        mw = 0.0
        if self._last is not None and t > self._last[0]:
            mw = (energy_j - self._last[1]) / (t - self._last[0]) * 1000.0
        self._last = (t, energy_j)
        return Reading(t, mw, {"estimate": mw}, energy_j=energy_j, estimate=True)

    def describe(self) -> Dict[str, object]:
        return {
            "meter": self.kind,
            "device": "none (synaptic operations x energy per operation)",
            "rails": ["estimate"],
            "total": "estimate",
            "total_mode": "estimate",
            "units": f"J = ops x {self.pj_per_op:g} pJ ({self.op_label})",
            "min_interval_s": self.min_interval_s,
            "estimate": True,
            "note": "estimate, not a measurement: operation counts x Horowitz 45 nm pJ/op",
        }
