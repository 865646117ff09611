"""The spikeedge bundle (``.seb``): the single source of truth for the deployable model format.

A bundle is one file::

    magic        8 bytes   b"\\x89SEB\\r\\n\\x1a\\n"
    length       4 bytes   little-endian uint32: size of the manifest in bytes
    manifest     JSON      schema version, model records, array table, provenance
    arrays       raw       little-endian numpy arrays, each at a 16-byte aligned offset
    sha256       32 bytes  digest of everything before it

Model records are frozen dataclasses registered by ``kind``; scalar fields live in the manifest,
array fields in the array table (``dtype``, ``shape``, ``offset``, ``nbytes``). Loading checks, in
order: magic, checksum, manifest length, schema version, array table, every record's fields and types,
then each record's own consistency rules, within the bounds of ``limits.py``. Any failure is a one-line ``BundleError`` naming the
file; nothing half-valid is ever returned. No pickle anywhere. ``docs/bundle.md`` documents the
format; a change to it means a new ``SCHEMA_VERSION`` and a migration in ``MIGRATIONS``.

The package: ``layers.py`` (the recurrent records and the rule helpers), ``conv_layers.py`` (the conv
records), ``models.py`` (``Bundle``, ``ConvBundle``), ``manifest.py`` (records <-> JSON, schema
version, migrations) and ``container.py`` (bytes, checksum, files). Import from the package.
"""

from __future__ import annotations

from .layers import (  # noqa: F401
    _Invalid,
    DeltaEncoder,
    DirectEncoder,
    Encoder,
    LifRecurrentLayer,
    RateEncoder,
    REGISTRY,
    SparseMatrix,
    TraceReadout,
)
from .conv_layers import (  # noqa: F401
    CONV_LAYER_KINDS,
    CONV_REGISTRY,
    ConvLayer,
    ConvLifLayer,
    ConvStreamLayer,
    FlattenLayer,
    GlobalSumPoolLayer,
    GRAPHLESS_KINDS,
    KIND_SINCE,
    LinearLifLayer,
    LinearReadout,
    MaxPoolLayer,
    SPIKING_KINDS,
    STREAM_KINDS,
    StreamLifLayer,
    SumPoolLayer,
)
from .limits import MAX_ACC  # noqa: F401
from .models import (  # noqa: F401
    AnyBundle,
    Bundle,
    ConvBundle,
)
from .manifest import (  # noqa: F401
    bundle_from_manifest,
    bundle_to_manifest,
    encoder_from_json,
    encoder_to_json,
    FORMAT_NAME,
    MIGRATIONS,
    SCHEMA_VERSION,
    schema_version_of,
)
from .container import (  # noqa: F401
    ALIGN,
    ALLOWED_DTYPES,
    decode_bytes,
    DIGEST_BYTES,
    dumps,
    encode_bytes,
    file_sha256,
    load,
    loads,
    MAGIC,
    MAX_MANIFEST_BYTES,
    save,
    write_atomic,
)
