"""What the CLI tests share: call ``spikeedge`` in-process, and check its output contract
(exactly one JSON object on stdout; user errors as one line on stderr, exit 2)."""

from __future__ import annotations

import json
from typing import Any, Dict, Tuple

from spikeedge.cli.app import main


def _not_json(name: str) -> Any:
    raise AssertionError("stdout holds %s, which is not JSON" % name)


def one_json(stdout: str) -> Dict[str, Any]:
    """``stdout`` must be exactly one JSON object (and a trailing newline), nothing else; strict
    JSON: NaN and Infinity, which Python's json module would accept, fail."""
    decoder = json.JSONDecoder(parse_constant=_not_json)
    text = stdout.strip()
    assert text, "nothing on stdout"
    obj, end = decoder.raw_decode(text)
    assert text[end:].strip() == "", "more than one JSON value on stdout: %r" % text[end : end + 200]
    assert isinstance(obj, dict), "stdout holds a JSON %s, not an object" % type(obj).__name__
    assert stdout.count("\n") == 1, "the JSON object is not one line followed by a newline"
    return obj


def call(capsys: Any, *argv: Any) -> Tuple[int, str, str]:
    capsys.readouterr()
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_user_error(rc: int, out: str, err: str, *names: str) -> None:
    """Exit 2, nothing on stdout, one line on stderr naming each of ``names``, no traceback."""
    assert rc == 2, (rc, out, err)
    assert out == ""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, "stderr is not one line: %r" % err
    assert lines[0].startswith("error: ")
    for name in names:
        assert name in lines[0], "%r not named in %r" % (name, lines[0])
