"""One error family for the whole tool.

Library code raises these; only the CLI turns them into messages and exit codes
(``../shared/cli.md``: 1 = a check that ran and failed, 2 = bad input or usage).
Messages are one line and name the file or option at fault.
"""

from __future__ import annotations


class SpikeedgeError(Exception):
    """Base class: a problem the user can fix; shown as one line, exit code 2."""

    exit_code = 2


class BundleError(SpikeedgeError):
    """A bundle file is missing, corrupt, of another schema version or inconsistent."""


class DataError(SpikeedgeError):
    """A data file or task is missing, malformed or of the wrong shape."""


class ModelError(SpikeedgeError):
    """A checkpoint or model configuration is invalid."""


class MissingExtraError(SpikeedgeError):
    """An optional dependency (an install extra) is needed for this command."""


class BoardError(SpikeedgeError):
    """An unknown board or an unreadable board description."""


class DeployError(SpikeedgeError):
    """Deploying to a board failed."""


class MeasurementError(SpikeedgeError):
    """A power sensor is absent or unreadable."""


class CheckFailed(SpikeedgeError):
    """A check ran and its result is below the threshold (exit code 1)."""

    exit_code = 1
