"""What every command shares: JSON output, progress, opening models, the offline-extra check."""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Tuple

import numpy as np
import typer
from rich.console import Console
from rich.markup import escape

from ..errors import MissingExtraError, SpikeedgeError

JsonOpt = typer.Option(False, "--json", help="Print exactly one JSON object on stdout.")


def printable(text: str) -> str:
    """``text`` with every character that is not printable (controls such as ESC, newlines and
    tabs, format characters such as a right-to-left override, line and paragraph separators)
    written as its Python escape (``\\x1b``, ``\\n``, ``\\u202e``): a string read from a file, a
    layer name say, can neither drive the terminal nor start a line of its own (a forged
    ``error:`` line). ``--json`` needs nothing: JSON escapes them."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class SafeConsole(Console):
    """A rich console whose ``print`` passes every string through ``printable``: the one place
    where human output is cleaned (markup is escaped by the callers, as before)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:  # type: ignore[override]
        super().print(*(printable(o) if isinstance(o, str) else o for o in objects), **kwargs)


err_console = SafeConsole(stderr=True)
out_console = SafeConsole()


SEED_MAX = 2**32 - 1  # numpy's and torch's seeds


def in_range(lo: float, hi: float, lo_open: bool = False) -> Callable[..., Any]:
    """A Typer callback that refuses a number outside ``[lo, hi]`` (``(lo, hi]`` with
    ``lo_open``), NaN included, where the option is parsed, before any work starts: one line
    naming the option and the value (``--epochs -1: not in [1, 10000]``), exit 2. ``None`` (an
    option left out) passes."""

    def check(param: typer.CallbackParam, value: Any) -> Any:
        if value is None:
            return value
        low_ok = value > lo if lo_open else value >= lo
        if not (low_ok and value <= hi):  # NaN fails both
            name = "/".join(param.opts) if param.opts else param.name
            raise SpikeedgeError("%s %s: must be %s %s and <= %s" % (name, value, ">" if lo_open else ">=", _num(lo), _num(hi)))
        return value

    return check


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else "%g" % x


def Seed(help: str = "Seed for every random choice.") -> Any:  # noqa: N802 (reads like an option)
    """The ``--seed`` option every command shares: an integer in [0, 2**32 - 1]."""
    return typer.Option(0, "--seed", help=help, callback=in_range(0, SEED_MAX))


_RESTORE: List[Callable[[], Any]] = []


def one_thread_pool() -> None:
    """Run torch and numpy's BLAS on one thread for the rest of this command. The models here
    are small (a few hundred neurons, batches of tens): a second thread gains little on an idle
    machine and, on a busy two-core one, the threads spin against each other and run many times
    slower (a float Mackey-Glass evaluation: about 1 s on one thread, 15 s on two). ``main``
    restores the previous settings when the command ends (``restore_threads``)."""
    try:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(1)
        _RESTORE.append(lambda: torch.set_num_threads(before))
    except ImportError:
        pass
    try:
        from threadpoolctl import threadpool_limits

        _RESTORE.append(threadpool_limits(1).restore_original_limits)
    except ImportError:
        pass


def restore_threads() -> None:
    """Undo ``one_thread_pool`` (the CLI may run in-process, inside tests or notebooks)."""
    while _RESTORE:
        _RESTORE.pop()()


def require_offline() -> None:
    """Fail in one line when torch (the ``offline`` extra) is not installed."""
    try:
        import torch  # noqa: F401
    except ImportError:
        raise MissingExtraError("this command needs the offline extra: pip install 'spikeedge[offline]'") from None


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError("not JSON-able: %r" % type(obj))


def json_text(result: dict) -> str:
    """``result`` as strict JSON (``allow_nan=False``): NaN and infinities, which JSON cannot
    hold, become ``null``, and the key ``json_note`` lists where they were. Every ``--json``
    output of the CLI goes through here."""
    try:
        return json.dumps(result, default=_jsonable, allow_nan=False)
    except ValueError:
        pass
    where: list = []
    clean = _finite(json.loads(json.dumps(result, default=_jsonable)), "", where)
    note = "not finite, written as null: " + ", ".join(where[:20]) + (" ..." if len(where) > 20 else "")
    clean["json_note"] = note if "json_note" not in clean else "%s; %s" % (clean["json_note"], note)
    return json.dumps(clean, allow_nan=False)


def _finite(obj: Any, path: str, where: list) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        where.append(path or "(top)")
        return None
    if isinstance(obj, dict):
        return {k: _finite(v, "%s.%s" % (path, k) if path else str(k), where) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v, "%s[%d]" % (path, i), where) for i, v in enumerate(obj)]
    return obj


def emit(result: dict, as_json: bool, human: Optional[Any] = None) -> None:
    """Print ``result`` as one JSON object (``--json``, strict: ``json_text``) or in human form
    on stdout."""
    if as_json:
        sys.stdout.write(json_text(result) + "\n")
    elif human is not None:
        human(result)
    else:
        for key, value in result.items():
            out_console.print("[bold]%s[/bold]: %s" % (escape(str(key)), escape(str(value))))


@contextmanager
def stages(total: int, quiet: bool) -> Iterator[Any]:
    """A progress bar over named stages on stderr; ``advance(message)`` moves it on."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err_console, disable=quiet, transient=True)
    with progress:
        task = progress.add_task("starting", total=total)

        def advance(message: str) -> None:
            progress.update(task, description=message)
            progress.advance(task)

        yield advance


BackendOpt = typer.Option("auto", "--backend", help="event (.seb), onnx (.onnx) or tflite (.tflite); auto: by the file type.")


def open_stepper(path: Path, backend: str = "auto") -> Any:
    """Any model form behind ``start``/``step``: a bundle on the event-driven runtime, an
    .onnx or .tflite step graph on its interpreter, a checkpoint on the float torch model
    (offline extra)."""
    from ..runtime.backends import SUFFIX, open_model

    if not path.exists():
        raise SpikeedgeError("%s: no such file" % path)
    if path.suffix.lower() in SUFFIX:
        return open_model(path, backend)
    if backend not in ("auto",):
        raise SpikeedgeError("%s: a checkpoint runs on the float torch model, not on backend %r (export it first)" % (path, backend))
    require_offline()
    from ..offline.checkpoint import load_checkpoint
    from ..offline.train import FloatStepper

    model, record = load_checkpoint(path, kind="any")
    if record["model"] == "folded":
        raise SpikeedgeError("%s: an imported (NIR) conv model runs once exported: spikeedge export %s -o model.seb" % (path, path))
    if record["model"] == "convsnn":
        from ..offline.convtrain import ConvFloatStepper

        stepper: Any = ConvFloatStepper(model)
    else:
        stepper = FloatStepper(model)
    stepper.record = record
    return stepper


def warn(message: str) -> None:
    """One warning line on stderr (it never changes the exit code)."""
    sys.stderr.write("warning: %s\n" % message)


def warn_untrained(path: Path, stepper: Any) -> None:
    """Say so when a checkpoint was never trained (``prune lnp`` writes such): its metric is
    chance."""
    record = getattr(stepper, "record", None)
    if record is not None and not record.get("training"):
        warn("%s was never trained (its readout is untrained: expect chance-level results); train it with 'spikeedge train hrsnn --from %s'" % (path, path))


def model_io(stepper: Any) -> Optional[Tuple[int, int]]:
    """(inputs, outputs) of a stepper when it says (a bundle's session, a float checkpoint)."""
    bundle = getattr(stepper, "bundle", None)
    if bundle is not None and hasattr(bundle, "encoder") and hasattr(bundle, "n_outputs"):
        return int(bundle.encoder.n_inputs), int(bundle.n_outputs)
    cfg = getattr(getattr(stepper, "model", None), "cfg", None)
    if cfg is not None and hasattr(cfg, "n_inputs") and hasattr(cfg, "n_outputs"):
        return int(cfg.n_inputs), int(cfg.n_outputs)
    return None


def check_fits(model: Path, stepper: Any, spec: Any, task: str) -> None:
    """A one-line DataError when a model's inputs or outputs do not match the task's (a
    classifier evaluated on a forecast, a 3-D forecaster on a 1-D series)."""
    from ..errors import DataError

    io_ = model_io(stepper)
    if io_ is None:
        return
    need = (int(spec.n_inputs), int(spec.n_outputs))
    if io_ != need:
        what = "a forecaster" if spec.kind == "forecast" else "a classifier of %d classes" % need[1]
        raise DataError("%s: the model takes %d input(s) and gives %d output(s); --task %s needs %d input(s) and %d output(s) (%s)"
                        % (model, io_[0], io_[1], task, need[0], need[1], what))


TASKS_HELP = "mackey-glass, lorenz, rossler, sunspots, digits, mnist, mnist1d (workstation only) or npz."
DataOpt = typer.Option(None, "--data", help="MNIST folder or the .npz file of task 'npz'.")
LayoutOpt = typer.Option(None, "--layout", help="Task npz: how a classification x array is laid out: nct (samples, channels, length; UCR/UEA files from aeon or sktime) or ntc (samples, steps, inputs). Needed when the file alone cannot tell.")
TauOpt = typer.Option(17, "--tau", callback=in_range(17, 30), help="Mackey-Glass delay tau (NeuroBench's series: 17 to 30).")
WindowsOpt = typer.Option(None, "--windows", "--repeats", callback=in_range(1, 1000), help="Forecast windows (NeuroBench: 30 for the built-in series; a user series: 1 unless given).")
WindowTrainOpt = typer.Option(None, "--window-train", callback=in_range(1, 10**7), help="Teacher-forced points per forecast window (built-in series: 750; a user series: a quarter of it).")
WindowTestOpt = typer.Option(None, "--window-test", callback=in_range(1, 10**7), help="Forecast points per window (built-in series: 750; a user series: a quarter of it).")
WindowShiftOpt = typer.Option(None, "--window-shift", callback=in_range(0, 10**7), help="Points between window starts (built-in series: 37.5; a user series: spread evenly).")


def task_of(task: str, *, data: Optional[str] = None, seed: int = 0, layout: Optional[str] = None, tau: int = 17,
            windows: Optional[int] = None, window_train: Optional[int] = None, window_test: Optional[int] = None,
            window_shift: Optional[float] = None, quiet: bool = False) -> Any:
    """Load a task from the shared options; says on stderr how a user's file was read."""
    from ..tasks.registry import Windows, load_task

    if layout is not None and task != "npz":
        raise SpikeedgeError("--layout: only for --task npz (a user's file)")
    if tau != 17 and task != "mackey-glass":
        raise SpikeedgeError("--tau: only for --task mackey-glass")
    spec = load_task(task, data=data, seed=seed, layout=layout, tau=tau, windows=Windows(windows, window_train, window_test, window_shift))
    if spec.description and not quiet:
        sys.stderr.write("read %s\n" % spec.description)
    return spec
