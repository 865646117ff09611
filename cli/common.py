"""What every command shares: JSON output, progress, opening models, the offline-extra check."""

from __future__ import annotations

import json
import math
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Optional

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
    if record["model"] == "convsnn":
        from ..offline.convtrain import ConvFloatStepper

        return ConvFloatStepper(model)
    return FloatStepper(model)
