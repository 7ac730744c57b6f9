"""Per-frame face flags (`/flags`, uint8): how each stored frame's landmarks were obtained.

The one definition: the tracker sets them (`ferbench.preprocess.track` imports them from here), the store
writes their names as the `meanings` attribute of `/flags`, and inspect, the prepare summary and the
coverage fraction read them back through these names.
"""

from __future__ import annotations

import numpy as np

NONE = 0  # not set (only in a failed track)
DETECTED = 1  # face and landmarks found by the detector on this frame
INTERPOLATED = 2  # landmarks interpolated between two detections of the same track (frame not examined)
FILLED = 3  # examined, no matching face (or an unreadable frame): landmarks and pixels from a neighbour
FLAG_NAMES = {NONE: "none", DETECTED: "detected", INTERPOLATED: "interpolated", FILLED: "filled"}

#: Flags of frames whose face the track found.
FACE_FOUND = (DETECTED, INTERPOLATED)


def face_found(flags: np.ndarray) -> np.ndarray:
    """Boolean mask of the frames whose face the track found (detected, or interpolated between two detections)."""
    return np.isin(np.asarray(flags), FACE_FOUND)


def coverage(flags: np.ndarray) -> float:
    """Fraction of frames whose face the track found; 0.0 for no frames."""
    found = face_found(flags)
    return float(found.mean()) if found.size else 0.0


def flag_name(code: int) -> str:
    """The name of a flag code; an unknown code (a file from a newer ferbench) is shown as its number."""
    return FLAG_NAMES.get(int(code), str(int(code)))
