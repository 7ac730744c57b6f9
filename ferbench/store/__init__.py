"""The ferbench HDF5 store: one self-describing, versioned file per dataset and preprocessing config.

Layout of a finished file (schema version 2; every string is UTF-8, no pickles anywhere, SPEC 8)::

    /                      attrs: format="ferbench-store", schema_version=2, dataset, classes (JSON list),
                                  config (JSON object, includes "length" = T), aligner, ferbench_version,
                                  source_root, created (ISO 8601 UTC), n_samples, n_frames, length
    /frames                uint8   (F, H, W, 3)  aligned RGB faces, every sample's native frames back to back;
                                   chunks of one frame, gzip level 4
    /landmarks             float32 (F, 5, 2)     5 points (eyes, nose, mouth corners) in aligned-crop pixels
    /flags                 uint8   (F,)          codes of `ferbench.store.flags`; attr `meanings` (JSON {code: name})
    /source_frame          int64   (F,)          each frame's number in the native data (the number in its file
                                                 name, e.g. BP4D 2440 or CK+ 11, or its index in the video), to
                                                 join with outside label files and undo frame-rate resampling
    /aus                   int8    (F, n_aus)    1/0, -1 unknown; attr `au_names` (JSON) -- only for AU datasets
    /samples/<column>      one 1-D dataset per column, one row per sample, rows sorted by id:
                           id, subject, split ("" = none), mode (JSON object): UTF-8 strings;
                           label int32 (-1 = none), frame_start int64, frame_count int32, fps float64,
                           onset/apex/offset int32 (-1 = none), apex_estimated uint8 (0/1),
                           coverage float32 (fraction of the sample's frames where the tracked face was found:
                           detected or interpolated between two detections; schema 2, computed from /flags when
                           a version-1 file is read), subject_source UTF-8 (where the adapter took the subject id
                           from, "" = the dataset's own layout; folder: "csv" or "name", the clip name's prefix,
                           a guess; schema 3, empty when an older file is read)
    /index/clip            int32 (n, T)  temporal normalisation, frame positions relative to frame_start
    /index/states          int32 (n, 5)  expression-state frames (onset, onset-apex, apex, apex-offset,
                                         offset), relative to frame_start; -1 rows = none
    /failures/id, /failures/reason   UTF-8 strings: samples excluded (e.g. no face), sorted by id

(`schema.COLUMNS` and `schema.FRAME_ARRAYS` are this layout as data; a test keeps the two equal.)

Writing (`StoreWriter`) is crash-safe by construction rather than by flushing one big HDF5 file (HDF5
gives no guarantee that a file killed between flushes can be reopened): the temporary output
`<path>.tmp/` is a folder holding `manifest.json` (the identity of the run) and one small HDF5 shard per
finished sample, written as `*.part` and renamed into place only once complete (SPEC 2 allows "per-worker
shards merged at the end"). A killed run therefore leaves only whole, readable shards plus at most one
`*.part`, which a resume deletes; `done_ids` lists the finished samples. `finalize()` copies the shards
in sorted-id order into `<path>.tmp/final.h5.part` (frames chunk by chunk, still compressed) and renames
it to `<path>` atomically, so the same input and config give the same arrays whatever the arrival order.
`<path>.lock` (pid + host, created with O_CREAT|O_EXCL and held with flock) refuses a second writer.
Each shard (and each recorded failure) carries its sample's input fingerprint, so a resume can tell a
finished sample from one whose input changed since (`fingerprints`). Every write error (OSError, or the
RuntimeError h5py raises on a full disk) becomes one `StoreIOError` naming the file; finished shards stay.


Reading (`Store`) checks the file's consistency, not only its presence: column lengths against
`n_samples`, per-frame arrays against `n_frames`, labels within the class list, each sample's frame range
inside `/frames` and its indices inside its frames; a damaged file is one DatasetError naming what is wrong.

The package, one job a module: `schema` (versions, the per-sample column table and per-frame arrays that
writer and reader both walk, the records), `flags` (the per-frame flag codes), `writer` (`StoreWriter`),
`_io` (write errors as one line), `reader` (`Store`, `open_store`, `Loaded`) and
`inspection` (`inspect`). Everything public is importable from `ferbench.store`.
"""

from __future__ import annotations

from ._io import StoreIOError
from .flags import DETECTED as FLAG_DETECTED
from .flags import FILLED as FLAG_FILLED
from .flags import FLAG_NAMES as FLAG_MEANINGS
from .flags import INTERPOLATED as FLAG_INTERPOLATED
from .flags import NONE as FLAG_NONE
from .inspection import inspect
from .reader import Loaded, Store, open_store
from .schema import (
    COLUMNS,
    COMPRESSION,
    FORMAT_NAME,
    INDEXES,
    READABLE_VERSIONS,
    SCHEMA_VERSION,
    STATE_NAMES,
    SampleRecord,
    StoredSample,
)
from .writer import StoreWriter

__all__ = [
    "COLUMNS",
    "COMPRESSION",
    "FLAG_DETECTED",
    "FLAG_FILLED",
    "FLAG_INTERPOLATED",
    "FLAG_MEANINGS",
    "FLAG_NONE",
    "FORMAT_NAME",
    "INDEXES",
    "READABLE_VERSIONS",
    "SCHEMA_VERSION",
    "STATE_NAMES",
    "Loaded",
    "SampleRecord",
    "Store",
    "StoreIOError",
    "StoreWriter",
    "StoredSample",
    "inspect",
    "open_store",
]
