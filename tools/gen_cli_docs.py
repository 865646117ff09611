#!/usr/bin/env python3
"""Generate ``docs/cli.md``, the reference of the ``spikeedge`` command, from the Typer app.

    python tools/gen_cli_docs.py            # (re)write docs/cli.md
    python tools/gen_cli_docs.py --check    # exit 1 if docs/cli.md is stale (run in CI)

The text comes from the click command tree that Typer builds (``typer.main.get_command``):
every command's docstring and, for each parameter, its flags, value kind, default and help.
The Markdown is rendered here rather than taken from Typer's help screen, so it depends
neither on the terminal width nor on how rich or Typer happen to draw help; the same code
gives the same file on every machine.
"""

from __future__ import annotations

import argparse
import difflib
import enum
import inspect
import sys
import typing
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

DOCS = Path(__file__).resolve().parent.parent / "docs" / "cli.md"
PROG = "spikeedge"

HEADER = """\
# `spikeedge` command reference

Generated from the command's own help by `python tools/gen_cli_docs.py`; do not edit by hand.
CI runs `python tools/gen_cli_docs.py --check`, which fails when this file is stale.
The contract these commands keep is `cli.md` in the shared design notes.

Conventions for every command:

- `--help` shows the command's help; `spikeedge --debug COMMAND ...` shows the traceback of an error.
- `--json` (where offered) prints exactly one JSON object on stdout; progress and logs go to stderr.
- Exit codes: 0 success; 1 a check that ran and failed; 2 bad input or usage (one-line message
  naming the file or option); 130 interrupted.
"""

_KINDS = {bool: "flag", int: "integer", float: "number", str: "text", Path: "path"}


def _unoptional(ann: Any) -> Any:
    """``Optional[X]`` -> ``X``."""
    if typing.get_origin(ann) is typing.Union:
        rest = [a for a in typing.get_args(ann) if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return ann


def _hints(command: Any) -> Dict[str, Any]:
    """Type hints of the function behind a command (Typer wraps it; unwrap first)."""
    callback = getattr(command, "callback", None)
    if callback is None:
        return {}
    try:
        return typing.get_type_hints(inspect.unwrap(callback))
    except Exception:  # an annotation that cannot be evaluated: fall back to "value"
        return {}


def _value_kind(param: Any, hints: Dict[str, Any]) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    ann = _unoptional(hints.get(param.name, None))
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return " \\| ".join(str(m.value) for m in ann)
    if typing.get_origin(ann) in (list, List, tuple, Tuple):
        inner = typing.get_args(ann)
        return "%s (repeatable)" % _KINDS.get(_unoptional(inner[0]) if inner else str, "value")
    return _KINDS.get(ann, "value")


def _default(param: Any) -> str:
    if param.required:
        return "required"
    value = param.default
    if getattr(param, "is_flag", False) or value is None or callable(value):
        return ""
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (list, tuple)):
        if not value:
            return ""
        value = " ".join(str(v) for v in value)
    return "`%s`" % value


def _cell(text: Optional[str]) -> str:
    return " ".join((text or "").split()).replace("|", "\\|")


def _is_argument(param: Any) -> bool:
    return getattr(param, "param_type_name", "") == "argument"


def _metavar(param: Any) -> str:
    name = param.name.upper()
    if getattr(param, "nargs", 1) == -1:
        name += "..."
    return name if param.required else "[%s]" % name


def _visible(params: List[Any]) -> List[Any]:
    return [p for p in params if not getattr(p, "hidden", False)]


def _subcommands(command: Any) -> List[Tuple[str, Any]]:
    subs = getattr(command, "commands", None) or {}
    return [(name, cmd) for name, cmd in subs.items() if not getattr(cmd, "hidden", False)]


def _short_help(command: Any) -> str:
    text = inspect.cleandoc(getattr(command, "short_help", None) or command.help or "")
    first = text.split("\n\n")[0]
    return _cell(first)


def _help_paragraphs(help_text: Optional[str]) -> List[str]:
    """The docstring as Markdown: paragraphs as text, ``Example:`` paragraphs as code blocks."""
    text = inspect.cleandoc(help_text or "").partition("\f")[0]
    out = []
    for para in [p for p in text.split("\n\n") if p.strip()]:
        lines = para.strip().splitlines()
        if lines[0].startswith(("Example:", "Examples:")):
            label, _, first = lines[0].partition(":")
            code = [first.strip()] if first.strip() else []
            code += [ln.strip() for ln in lines[1:]]
            out.append("%s:\n\n```\n%s\n```" % (label, "\n".join(code)))
        else:
            out.append(" ".join(ln.strip() for ln in lines))
    return out


def _anchor(path: str) -> str:
    return path.lower().replace(" ", "-")


def _walk(command: Any, path: str) -> List[Tuple[str, Any]]:
    """Every command in the tree, depth first in the order the app registers them."""
    found = [(path, command)]
    for name, sub in _subcommands(command):
        found += _walk(sub, "%s %s" % (path, name))
    return found


def _section(path: str, command: Any) -> str:
    params = _visible(list(command.params))
    subs = _subcommands(command)
    hints = _hints(command)
    usage = [path]
    if any(not _is_argument(p) for p in params) or subs:
        usage.append("[OPTIONS]")
    usage += [_metavar(p) for p in params if _is_argument(p)]
    if subs:
        usage.append("COMMAND [ARGS]...")

    paragraphs = _help_paragraphs(command.help)
    examples = [p for p in paragraphs if p.startswith("Example")]
    parts = ["## `%s`" % path]
    parts += [p for p in paragraphs if not p.startswith("Example")]
    parts.append("Usage:\n\n```\n%s\n```" % " ".join(usage))
    parts += examples
    if params:
        rows = ["| argument or option | value | default | description |", "|---|---|---|---|"]
        for p in params:
            if _is_argument(p):
                names = "`%s`" % p.name.upper()
            else:
                names = ", ".join("`%s`" % o for o in list(p.opts) + list(getattr(p, "secondary_opts", [])))
            rows.append("| %s | %s | %s | %s |" % (names, _value_kind(p, hints), _default(p), _cell(getattr(p, "help", ""))))
        parts.append("\n".join(rows))
    if subs:
        rows = ["| command | what it does |", "|---|---|"]
        rows += ["| [`%s %s`](#%s) | %s |" % (path, name, _anchor("%s %s" % (path, name)), _short_help(sub)) for name, sub in subs]
        parts.append("\n".join(rows))
    return "\n\n".join(parts) + "\n"


def render() -> str:
    """The whole reference as Markdown text."""
    import typer.main

    from spikeedge.cli.app import app

    root = typer.main.get_command(app)
    tree = _walk(root, PROG)
    contents = ["## Contents", ""] + ["- [`%s`](#%s)" % (path, _anchor(path)) for path, _ in tree]
    return "\n".join([HEADER, "\n".join(contents) + "\n"] + [_section(path, cmd) for path, cmd in tree])


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the CLI reference (docs/cli.md) from the Typer app.")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the file is stale")
    parser.add_argument("--output", type=Path, default=DOCS, help="file to write or check (default: docs/cli.md)")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        try:
            current = args.output.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = ""
        if current == text:
            return 0
        sys.stderr.write("%s is stale: run python tools/gen_cli_docs.py\n" % args.output.name)
        diff = difflib.unified_diff(current.splitlines(), text.splitlines(), "checked-in", "generated", lineterm="", n=1)
        sys.stderr.write("\n".join(list(diff)[:60]) + "\n")
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with open(args.output, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
