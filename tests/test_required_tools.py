"""Where the run promised every system tool (``SPIKEEDGE_REQUIRE_ALL=1``, as CI sets it), the
compiled cores must have been built by ``pip install``: otherwise their test modules would skip
as a whole and the numpy fallback would pass for the compiled core."""

import pytest

from required import required
from spikeedge.runtime import cores


@pytest.mark.parametrize("name, error", [("recurrent", "LOAD_ERROR"), ("conv", "CONV_LOAD_ERROR")])
def test_compiled_cores_are_built_where_required(name: str, error: str) -> None:
    why = getattr(cores, error)
    if why is not None and not required():
        pytest.skip("the %s core is not built here: %s" % (name, why))
    assert why is None, "SPIKEEDGE_REQUIRE_ALL=1 but %s" % why
