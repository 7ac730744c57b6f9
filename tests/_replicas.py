"""The replica arguments the protocol and evaluate tests share, so a session prepares each replica once
(the `prepared_replica` fixture caches by its arguments). `aligner="none"`: these tests need the sample table
and frames, not detection. `size=32` (the smallest frame every bundled model takes): the evaluate tests on these
replicas prove plumbing (records, folds, transfer), not accuracy, and train about 3x faster than at 64 px."""

REPLICAS = {
    "ck+": dict(subjects=2, aligner="none", size=32),
    "mmi": dict(subjects=2, aligner="none", size=32),
    "casme2": dict(subjects=2, aligner="none", size=32),
    "oulu-casia": dict(subjects=2, modes=["VL/Strong", "VL/Dark", "NI/Strong"], aligner="none", size=32),
    "bp4d": dict(subjects=3, aligner="none", size=32),
    "afew": dict(subjects=1, aligner="none", size=32),
    "dfew": dict(subjects=1, aligner="none", size=32),
    "ferv39k": dict(subjects=1, aligner="none", size=32),
    "mafw": dict(subjects=1, aligner="none", size=32),
    "folder": dict(subjects=2, aligner="none", size=32),
}
