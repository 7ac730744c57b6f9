"""The replica arguments the protocol and evaluate tests share, so a session prepares each replica once
(the `prepared_replica` fixture caches by its arguments). `aligner="none"`: these tests need the sample table
and frames, not detection."""

REPLICAS = {
    "ck+": dict(subjects=2, aligner="none"),
    "mmi": dict(subjects=2, aligner="none"),
    "casme2": dict(subjects=2, aligner="none"),
    "oulu-casia": dict(subjects=2, modes=["VL/Strong", "VL/Dark", "NI/Strong"], aligner="none"),
    "bp4d": dict(subjects=3, aligner="none"),
    "afew": dict(subjects=1, aligner="none"),
    "dfew": dict(subjects=1, aligner="none"),
    "ferv39k": dict(subjects=1, aligner="none"),
    "mafw": dict(subjects=1, aligner="none"),
    "folder": dict(subjects=2, aligner="none"),
}
