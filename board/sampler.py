"""Sample a power meter in a background thread and integrate energy over marked windows.

Rules (``../shared/reference/boards.md``, NeuroBench system track):

* time is ``time.monotonic()``; two reads are never closer than the meter's
  ``min_interval_s`` (its refresh period) nor than the interval asked for;
* power is integrated with the trapezoid rule: between two samples power is linear, so the
  energy of a window whose ends fall between samples is the exact integral of that line;
  counter meters (RAPL, estimate) give the energy directly, interpolated linearly in time;
* an idle baseline (mean power with nothing running) is measured first; each window then
  reports **gross** energy (what the rails delivered) and **dynamic** energy
  (gross - baseline power x duration), mean power, samples and the sampling rate;
* when the meter fails mid-run the thread stops, the samples so far are kept, and the result
  carries the error and the fraction of each window that samples cover.

Usage::

    meter = open_meter("auto")
    with Sampler(meter) as s:
        s.measure_baseline(2.0)
        with s.window("inference", count=100):
            run_100_inferences()
    print(s.result().to_dict())
"""

from __future__ import annotations

import bisect
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import MeasurementError
from .meters.base import PowerMeter, Reading


# ---------------------------------------------------------------------------------------------
# integration


class EnergyTrace:
    """Cumulative energy (J) as a function of time, from a list of readings.

    Power meters: trapezoid rule between samples. Counter meters: their ``energy_j``.
    """

    def __init__(self, readings: Sequence[Reading], counter: Optional[bool] = None):
        if counter is None:
            counter = bool(readings) and readings[0].energy_j is not None
        self.counter = counter
        self.t = [r.time_monotonic for r in readings]
        self.p_w = [r.total_mw / 1000.0 for r in readings]
        if counter:
            e0 = float(readings[0].energy_j) if readings else 0.0  # type: ignore[arg-type]
            self.e = [float(r.energy_j) - e0 for r in readings]  # type: ignore[arg-type]
        else:
            self.e = [0.0] * len(readings)
            for i in range(1, len(readings)):
                dt = self.t[i] - self.t[i - 1]
                self.e[i] = self.e[i - 1] + 0.5 * (self.p_w[i] + self.p_w[i - 1]) * dt

    def span(self) -> Tuple[float, float]:
        return (self.t[0], self.t[-1]) if self.t else (0.0, 0.0)

    def energy_at(self, t: float) -> float:
        """Energy from the first sample to ``t`` (clamped to the sampled span)."""
        if not self.t or t <= self.t[0]:
            return 0.0
        if t >= self.t[-1]:
            return self.e[-1]
        i = bisect.bisect_right(self.t, t) - 1
        dt = self.t[i + 1] - self.t[i]
        x = t - self.t[i]
        if dt <= 0:
            return self.e[i]
        if self.counter:
            return self.e[i] + (self.e[i + 1] - self.e[i]) * x / dt
        slope = (self.p_w[i + 1] - self.p_w[i]) / dt
        return self.e[i] + self.p_w[i] * x + 0.5 * slope * x * x

    def energy_between(self, t0: float, t1: float) -> Tuple[float, float]:
        """(energy J over the covered part of [t0, t1], covered seconds)."""
        a, b = self.span()
        lo, hi = max(t0, a), min(t1, b)
        if hi <= lo:
            return 0.0, 0.0
        return self.energy_at(hi) - self.energy_at(lo), hi - lo

    def samples_between(self, t0: float, t1: float) -> int:
        return bisect.bisect_right(self.t, t1) - bisect.bisect_left(self.t, t0)


def integrate(readings: Sequence[Reading], t0: Optional[float] = None,
              t1: Optional[float] = None) -> float:
    """Energy (J) of readings between ``t0`` and ``t1`` (default: all), e.g. of a tegrastats log."""
    if len(readings) < 2:
        raise MeasurementError(f"need at least two readings to integrate, got {len(readings)}")
    trace = EnergyTrace(readings)
    a, b = trace.span()
    return trace.energy_between(a if t0 is None else t0, b if t1 is None else t1)[0]


# ---------------------------------------------------------------------------------------------
# results

# The least fraction of a window that readings must cover for its power and energy to count.
# NeuroBench's system track reports active power as the mean over the whole processing time and
# accepts a figure only when five trials lie within 5% of it (../shared/reference/neurobench.md);
# it states no coverage figure of its own. A window whose readings cover less than 95% of it can
# be off by more than that 5% tolerance (the unseen part may hold any power), so below 95% the
# figure is rejected: the commands exit 1 and the record says why (``SamplerResult.failure``).
MIN_COVERAGE = 0.95


@dataclass
class Baseline:
    power_mw: float  # mean idle power
    duration_s: float  # 0 when given rather than measured
    samples: int
    source: str  # "measured" or "given"


@dataclass
class WindowResult:
    name: str
    start_s: float  # time.monotonic() at entry
    end_s: float  # time.monotonic() at exit
    duration_s: float
    count: int  # items (inferences) done inside the window
    samples: int  # readings that fall inside the window
    coverage: float  # fraction of the window covered by samples (1.0 unless the meter failed)
    energy_j: float  # gross: everything the measured rails delivered
    mean_power_mw: float
    dynamic_energy_j: Optional[float]  # gross - baseline power x duration; None without baseline
    dynamic_power_mw: Optional[float]
    energy_per_item_j: float
    dynamic_energy_per_item_j: Optional[float]
    estimate: bool  # True: operation-count estimate, not a measurement
    label: str  # "measured" or "estimate"


@dataclass
class SamplerResult:
    meter: Dict[str, object]  # the meter's describe(): kind, device, rails, total
    interval_s: float  # interval actually used (never below the meter's refresh period)
    requested_interval_s: Optional[float]
    samples: int
    duration_s: float  # first to last sample
    effective_rate_hz: float  # (samples - 1) / duration
    energy_j: float  # over all samples
    mean_power_mw: float
    baseline: Optional[Baseline]
    windows: List[WindowResult] = field(default_factory=list)
    estimate: bool = False
    label: str = "measured"
    error: Optional[str] = None  # the meter's failure, when it failed mid-run
    complete: bool = True  # False when the meter failed: numbers cover the samples so far
    # one line when a window's coverage is below MIN_COVERAGE: its figures are not acceptable
    failure: Optional[str] = None
    min_coverage: float = MIN_COVERAGE

    def window(self, name: str) -> WindowResult:
        for w in self.windows:
            if w.name == name:
                return w
        raise KeyError(name)

    def to_dict(self) -> Dict[str, object]:
        return asdict(self)


# ---------------------------------------------------------------------------------------------
# sampler


class Sampler:
    """Reads ``meter`` every ``interval_s`` (default and minimum: ``meter.min_interval_s``)."""

    def __init__(self, meter: PowerMeter, interval_s: Optional[float] = None):
        self.meter = meter
        self.requested_interval_s = interval_s
        floor = float(getattr(meter, "min_interval_s", 0.0) or 0.0)
        self.interval_s = max(floor, float(interval_s) if interval_s is not None else floor)
        if self.interval_s <= 0:
            self.interval_s = 0.01
        self._samples: List[Reading] = []
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self.error: Optional[MeasurementError] = None
        self.baseline: Optional[Baseline] = None
        self._windows: List[Tuple[str, float, float, int]] = []

    # -- thread

    def _read_once(self) -> bool:
        try:
            r = self.meter.read()
        except MeasurementError as e:
            err: Optional[MeasurementError] = e
        except Exception as e:  # a meter bug must not kill the thread silently
            err = MeasurementError(f"{self.meter.kind} meter failed: {type(e).__name__}: {e}")
        else:
            err = None
        with self._cond:
            if err is not None:
                self.error = err
            else:
                self._samples.append(r)
            self._cond.notify_all()
        return err is None

    def _run(self) -> None:
        # A paced meter (tegrastats) blocks in read() until its next line: no sleep of our own.
        period = 0.0 if getattr(self.meter, "paced", False) else self.interval_s
        last_start = time.monotonic() - period
        while True:
            wait = last_start + period - time.monotonic()
            if self._stop.wait(max(0.0, wait)):
                break
            last_start = time.monotonic()
            if not self._read_once():
                return
        # A last reading after stop, so that windows that just ended are covered.
        wait = last_start + period - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._read_once()

    def start(self) -> "Sampler":
        """Start the thread; returns once the first reading is in (or raises its error)."""
        if self._thread is not None:
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="power-sampler", daemon=True)
        self._thread.start()
        self._wait_for(lambda: bool(self._samples))
        if not self._samples and self.error is not None:
            raise self.error
        return self

    def stop(self) -> SamplerResult:
        """Stop the thread (after one last reading) and return the result. Idempotent."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=self.interval_s + 10.0)
            self._thread = None
        return self.result()

    def __enter__(self) -> "Sampler":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _wait_for(self, predicate, timeout: Optional[float] = None) -> bool:
        if timeout is None:
            timeout = max(5.0, 3 * self.interval_s)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                if self.error is not None or (self._thread is None) or not self._thread.is_alive():
                    return predicate()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    # -- marks

    @property
    def samples(self) -> List[Reading]:
        with self._cond:
            return list(self._samples)

    def measure_baseline(self, duration_s: float = 2.0) -> float:
        """Measure idle power for ``duration_s`` (nothing else should run); returns mW."""
        if self._thread is None:
            self.start()
        t0 = time.monotonic()
        time.sleep(duration_s)
        t1 = time.monotonic()
        self._wait_for(lambda: bool(self._samples) and self._samples[-1].time_monotonic >= t1)
        trace = EnergyTrace(self.samples, self.meter.counter)
        energy, covered = trace.energy_between(t0, t1)
        if covered <= 0:
            if self.error is not None:
                raise self.error
            raise MeasurementError(f"no readings during the {duration_s:g} s idle baseline "
                                   f"({self.meter.kind} sampled every {self.interval_s:g} s)")
        self.baseline = Baseline(energy / covered * 1000.0, t1 - t0,
                                 trace.samples_between(t0, t1), "measured")
        return self.baseline.power_mw

    def set_baseline(self, power_mw: float) -> None:
        """Use a known idle power (e.g. measured earlier) instead of measuring one."""
        self.baseline = Baseline(float(power_mw), 0.0, 0, "given")

    @contextmanager
    def window(self, name: str, count: int = 1) -> Iterator[None]:
        """Mark an inference window; ``count`` items run inside it (for energy per item)."""
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.mark(name, t0, time.monotonic(), count)

    def mark(self, name: str, start_s: float, end_s: float, count: int = 1) -> None:
        """Add a window with explicit ``time.monotonic()`` bounds."""
        if end_s < start_s:
            raise MeasurementError(f"window {name!r} ends before it starts")
        with self._cond:
            self._windows.append((name, start_s, end_s, int(count)))

    # -- result

    def result(self) -> SamplerResult:
        samples = self.samples
        desc = dict(self.meter.describe())
        if getattr(self.meter, "fallback", None) and "fallback" not in desc:
            desc["fallback"] = self.meter.fallback  # e.g. a profile's fallback meter: say so in the record
        est = bool(desc.get("estimate", False))
        label = "estimate" if est else "measured"
        trace = EnergyTrace(samples, self.meter.counter)
        a, b = trace.span()
        total_e = trace.e[-1] if samples else 0.0
        duration = b - a
        windows = []
        base = self.baseline
        for name, t0, t1, count in self._windows:
            energy, covered = trace.energy_between(t0, t1)
            dur = t1 - t0
            mean_mw = energy / covered * 1000.0 if covered > 0 else 0.0
            dyn = dyn_mw = dyn_item = None
            if base is not None:
                dyn = energy - base.power_mw / 1000.0 * covered
                dyn_mw = mean_mw - base.power_mw
                dyn_item = dyn / count if count else None
            windows.append(WindowResult(
                name=name, start_s=t0, end_s=t1, duration_s=dur, count=count,
                samples=trace.samples_between(t0, t1),
                coverage=covered / dur if dur > 0 else (1.0 if a <= t0 <= b else 0.0),
                energy_j=energy, mean_power_mw=mean_mw, dynamic_energy_j=dyn,
                dynamic_power_mw=dyn_mw, energy_per_item_j=energy / count if count else 0.0,
                dynamic_energy_per_item_j=dyn_item, estimate=est, label=label,
            ))
        failure = None
        for w in windows:
            if w.coverage < MIN_COVERAGE:
                failure = ("power meter %s: readings cover %.0f%% of window %r, below the %.0f%% "
                           "that NeuroBench's system-track rules accept%s" % (
                               self.meter.kind, 100 * w.coverage, w.name, 100 * MIN_COVERAGE,
                               ": " + str(self.error) if self.error is not None else ""))
                break
        return SamplerResult(
            meter=desc,
            interval_s=self.interval_s,
            requested_interval_s=self.requested_interval_s,
            samples=len(samples),
            duration_s=duration,
            effective_rate_hz=(len(samples) - 1) / duration if duration > 0 else 0.0,
            energy_j=total_e,
            mean_power_mw=total_e / duration * 1000.0 if duration > 0 else 0.0,
            baseline=base,
            windows=windows,
            estimate=est,
            label=label,
            error=str(self.error) if self.error is not None else None,
            complete=self.error is None,
            failure=failure,
        )
