"""The bounds a bundle must stay within, checked on load before anything is allocated.

No real model comes near them (the quick demo's manifest is 3.4 kB with 40 JSON containers; a
conv ResNet's about 20 kB); they exist so that a small hostile file cannot make the loader or
the runtime allocate far more memory than the model needs. ``docs/bundle.md`` lists them.
"""

from __future__ import annotations

MAX_MANIFEST_BYTES = 4 << 20  # the manifest's JSON text
MAX_MANIFEST_CONTAINERS = 100_000  # JSON objects and arrays in the manifest (an upper bound: '{' and '[' bytes)
MAX_ARRAY_NDIM = 8  # dimensions of one array-table entry (the format uses at most 4)
MAX_ARRAY_DIM = (1 << 31) - 1  # length of one dimension
MAX_ARRAY_SPAN = 1 << 40  # product of the dimensions with zeros counted as 1 (numpy refuses a shape past 2**63 bytes even when empty)
MAX_ACC = (1 << 31) - 1  # an int32 accumulation must fit: largest |sum of w * input| over a target
MAX_TIME_STEPS = 10_000  # a conv bundle's time_steps (trained conv SNNs use 4 to a few hundred)
MAX_ACTIVATION = 1 << 24  # values of one conv layer's output for one image (224 x 224 x 64 is 3.2 M)
LAYER_MAJOR_MAX_VALUES = 1 << 23  # a conv run keeps steps x batch x largest activation (about 17 bytes each); above, it steps
