"""The ``spikeedge`` command: one Typer app joining thin command modules.

The only place where errors become exit codes (``../shared/cli.md``): ``SpikeedgeError`` and its
family print one line on stderr and exit with their code (2 bad input, 1 failed check); usage
errors exit 2; Ctrl-C exits 130. ``--debug`` (anywhere on the line) shows the traceback instead.
"""

from __future__ import annotations

import inspect
import re
import sys
from typing import Any, List, Optional

import typer

from .. import __version__
from ..errors import SpikeedgeError
from .common import printable
from . import bench, boards, demo, deploy, evaluate, export, info, nir_import, power, profile, prune, report, results, run, train, verify
from .common import restore_threads

app = typer.Typer(
    name="spikeedge",
    help="Prune spiking neural networks, export them as int8 and run them on edge boards.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("demo")(demo.demo)
app.add_typer(train.app, name="train")
app.add_typer(prune.app, name="prune")
app.command("import")(nir_import.import_model)
app.command("export")(export.export)
app.command("info")(info.info)
app.command("run")(run.run)
app.command("eval")(evaluate.evaluate)
app.command("verify")(verify.verify)
app.add_typer(boards.app, name="boards")
app.add_typer(power.app, name="power")
app.command("profile")(profile.profile)
app.command("flash")(deploy.flash)
app.command("rollback")(deploy.rollback)
app.command("bench")(bench.bench)
app.add_typer(results.app, name="results")
app.command("report")(report.report)


def readable(doc: str) -> str:
    """A docstring as help that reads like the docs: each paragraph one line (the terminal
    wraps it, never the source's line breaks), reStructuredText's double backquotes dropped."""
    paragraphs = [" ".join(p.split()) for p in re.split(r"\n\s*\n", inspect.cleandoc(doc or "")) if p.strip()]
    return "\n\n".join(re.sub(r"``([^`]+)``", r"'\1'", p) for p in paragraphs)


def _polish(typer_app: typer.Typer) -> None:
    """Readable help for every command of ``typer_app`` and its groups (``readable``)."""
    for command in typer_app.registered_commands:
        command.help = readable(command.help or inspect.getdoc(command.callback) or "")
    for group in typer_app.registered_groups:
        group.typer_instance.info.help = readable(group.typer_instance.info.help or "")
        _polish(group.typer_instance)


def _flag_type(original: Any) -> Any:
    def display(self: Any, ctx: Any) -> Optional[str]:
        return None if getattr(self, "is_flag", False) else original(self, ctx)  # a flag has no value: no "<bool>"

    return display


try:  # Typer >= 0.20 shows a type column; flags take no value, so show none for them
    from typer.core import TyperOption

    if hasattr(TyperOption, "display_type_rich"):
        TyperOption.display_type_rich = _flag_type(TyperOption.display_type_rich)
except ImportError:  # an older Typer draws no type for flags
    pass
_polish(app)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for errors."),
) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit(0)
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


_COMMAND: List[Any] = []


def _click_command() -> Any:
    """The click command behind ``app``, built once: what ``app(...)`` does on every call (30 ms;
    in-process callers such as the tests run thousands of commands)."""
    if not _COMMAND:
        _COMMAND.append(typer.main.get_command(app))
    return _COMMAND[0]


def main(argv: Optional[List[str]] = None) -> int:
    """Run the CLI; returns (and, as a console script, exits with) the exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    cut = args.index("--") if "--" in args else len(args)  # leave a wrapped command's own flags alone
    debug = "--debug" in args[:cut]
    if debug:
        args = [a for a in args[:cut] if a != "--debug"] + args[cut:]
    try:
        return _run(args, debug)
    finally:
        restore_threads()


def _run(args: List[str], debug: bool) -> int:
    try:
        rv = _click_command().main(args=args, prog_name="spikeedge", standalone_mode=False)
        if isinstance(rv, int) and not isinstance(rv, bool) and rv == 130:
            sys.stderr.write("interrupted\n")  # Ctrl-C: click returns 130 in non-standalone mode
        return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
    except SpikeedgeError as exc:
        if debug:
            raise
        sys.stderr.write("error: %s\n" % printable(str(exc).splitlines()[0]))
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
    except Exception as exc:  # click's exceptions: typer < 0.20 imports click, newer vendors it
        name = type(exc).__name__
        if name == "Exit":
            return int(getattr(exc, "exit_code", 0) or 0)
        if name == "Abort":
            sys.stderr.write("interrupted\n")
            return 130
        if hasattr(exc, "show") and hasattr(exc, "exit_code"):  # usage errors: one line, as for every user error
            ctx = getattr(exc, "ctx", None)
            where = ctx.command_path if ctx is not None else "spikeedge"
            message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
            sys.stderr.write(printable("error: %s: %s (see '%s --help')" % (where, " ".join(message.split()), where)) + "\n")
            return 2
        raise


def console_main() -> None:
    sys.exit(main())
