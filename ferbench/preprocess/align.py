"""Similarity alignment of a face to a fixed template, then a square crop.

yu2018 finds the two eyes with MTCNN, "determines the final rectangular face by keeping the distance
between the two eyes invariable", pads the rectangle to a square and resizes it to 64x64. A similarity
transform (rotation, uniform scale, translation; never shear or reflection) that sends the eye centres to
fixed positions in the output square is that crop, with in-plane rotation removed as well; pixels outside
the source image are zero (the paper's zero padding). Templates are stored in unit-square coordinates so
one template serves any output size.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = [
    "TEMPLATES",
    "YU2018_EYES",
    "ARCFACE_112",
    "template_points",
    "estimate_similarity",
    "warp_points",
    "invert_affine",
    "align_face",
    "sampled_region",
]

#: yu2018 eye-based template, fraction of the output side: eye centres (image-left eye first, as MTCNN
#: reports them) at x = 0.33 and 0.67, y = 0.35. The inter-ocular distance is 0.34 of the side (21.8 px at
#: 64x64) for every face; with usual face proportions (eye-to-chin about 1.7 inter-ocular distances, brows
#: about 0.4 above the eyes) the brows sit near y = 0.21 and the chin near y = 0.93, leaving a small margin
#: for a lowered head or an open mouth (surprise): the tight whole-face crop of yu2018's Fig. 6.
YU2018_EYES = np.array([[0.33, 0.35], [0.67, 0.35]], dtype=np.float64)

#: insightface/ArcFace 5-point template for a 112x112 crop (left eye, right eye, nose, mouth left, mouth
#: right), in pixels of the 112 crop.
ARCFACE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

#: name -> (template points in unit-square coordinates, indices of the 5 detector points they match).
#: Unit coordinates are continuous (the crop spans [0, 1], pixel i covers [i, i+1) / size); detectors and
#: cv2.warpAffine use pixel-index coordinates (pixel centres at integers), so a unit point u sits at pixel
#: index u * size - 0.5. ArcFace's template is given in index coordinates of the 112 crop, hence the +0.5.
TEMPLATES: dict[str, tuple[np.ndarray, tuple[int, ...]]] = {
    "yu2018": (YU2018_EYES, (0, 1)),
    "arcface": ((ARCFACE_112 + 0.5) / 112.0, (0, 1, 2, 3, 4)),
}


def _template(name: str) -> tuple[np.ndarray, tuple[int, ...]]:
    try:
        return TEMPLATES[name]
    except KeyError:
        raise ValueError(f"unknown alignment template {name!r}; choose one of {sorted(TEMPLATES)}") from None


def template_points(template: str = "yu2018", size: int = 64) -> np.ndarray:
    """Template landmarks in pixel-index coordinates of a `size` crop ((2,2) yu2018, (5,2) arcface).

    These are where a detector run on the aligned crop should report the landmarks.
    """
    pts, _ = _template(template)
    return pts * float(size) - 0.5


def estimate_similarity(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991, no reflection) mapping src -> dst, as a 2x3 matrix.

    Closed form and deterministic (unlike RANSAC in `cv2.estimateAffinePartial2D`), exact for two points,
    which is what the eye-only template needs.
    """
    src = np.asarray(src_pts, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst_pts, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or src.shape[0] < 2:
        raise ValueError(f"need >= 2 matching points, got {src.shape} and {dst.shape}")
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ValueError("landmarks contain NaN/inf")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s < 1e-12:
        raise ValueError("source landmarks are degenerate (all at one point)")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1, 1] = -1.0
    rot = u @ e @ vt
    scale = float((sig * np.diag(e)).sum() / var_s)
    m = np.zeros((2, 3), dtype=np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def warp_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to (N,2) points."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    m = np.asarray(matrix, dtype=np.float64)
    return p @ m[:, :2].T + m[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine matrix (maps crop coordinates back into the source image)."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def align_face(
    image: np.ndarray,
    points: np.ndarray,
    size: int = 64,
    template: str = "yu2018",
    *,
    border_value: int = 0,
    interpolation: int = cv2.INTER_LINEAR,
) -> tuple[np.ndarray, np.ndarray]:
    """Warp `image` so that the face's landmarks land on `template`, cropped to `size` x `size`.

    `points` are the detector's 5 landmarks (left eye, right eye, nose, mouth left, mouth right; the
    yu2018 template uses only the two eyes, so (2,2) works too). Returns the crop (uint8, same channels as
    the input) and the 2x3 image->crop matrix, so landmarks can be carried into the crop with
    `warp_points`. Outside the image the crop is `border_value` (zero padding as in yu2018).
    """
    if size < 8:
        raise ValueError(f"crop size must be >= 8, got {size}")
    tpl, idx = _template(template)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if pts.shape[0] < max(idx) + 1:
        raise ValueError(f"template {template!r} needs {max(idx) + 1} landmarks, got {pts.shape[0]}")
    matrix = estimate_similarity(pts[list(idx)], tpl * float(size) - 0.5)
    # Downscaling a big face to 64 px with bilinear sampling aliases; INTER_AREA is not available for
    # warps, so pre-blur in proportion to the scale factor instead (keeps edges of small faces crisp).
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    src, warp = image, matrix
    if interpolation == cv2.INTER_LINEAR and scale < 0.7:
        sigma = (1.0 / scale - 1.0) / 2.0
        src, warp = _blurred_region(image, matrix, int(size), sigma)
    channels = 1 if image.ndim == 2 else image.shape[2]
    crop = cv2.warpAffine(
        src,
        warp,
        (int(size), int(size)),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(border_value,) * min(channels, 4),
    )
    return crop, matrix


def sampled_region(matrix: np.ndarray, size: int, shape: tuple[int, ...], margin: int = 0) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): the pixels of an image of `shape` that a bilinear warp by `matrix` into a `size`
    crop reads, grown by `margin` and clipped to the image (empty when x0 >= x1 or y0 >= y1)."""
    corners = np.array([[0, 0], [size - 1, 0], [0, size - 1], [size - 1, size - 1]], np.float64)
    src = warp_points(corners, invert_affine(matrix))
    h, w = shape[:2]
    x0 = max(0, int(np.floor(src[:, 0].min())) - 1 - margin)
    y0 = max(0, int(np.floor(src[:, 1].min())) - 1 - margin)
    x1 = min(w, int(np.ceil(src[:, 0].max())) + 2 + margin)
    y1 = min(h, int(np.ceil(src[:, 1].max())) + 2 + margin)
    return x0, y0, x1, y1


def _blurred_region(image: np.ndarray, matrix: np.ndarray, size: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """The anti-alias blur of only the part of `image` the crop samples (plus the kernel's reach), and the
    warp matrix moved onto that part: the same crop as blurring the whole frame (a 64 px crop of a
    640x490 CK+ frame reads about a tenth of it). Where the face is shrunk more than 4x (CK+ about 5.7x,
    BP4D's 1040x1392 frames about 14x) the region is first reduced by an integer factor with area
    averaging (a box filter, itself an anti-alias filter), then blurred for the remaining factor: a
    kernel of a few pixels instead of dozens; the crop differs from the direct path by about one grey level
    on average (measured on t1 faces enlarged 3-6x and CK+ replica frames: mean 0.3-1.0, sharp edges more)."""
    ksize = int(round(sigma * 6 + 1)) | 1  # OpenCV's kernel size for 8-bit images and this sigma
    x0, y0, x1, y1 = sampled_region(matrix, size, image.shape, margin=ksize // 2 + 1)
    if x0 >= x1 or y0 >= y1:  # the crop lies outside the frame: it is all border, nothing to blur
        return image, matrix
    scale = 1.0 / (2.0 * sigma + 1.0)
    k = max(1, int(0.5 / scale))  # integer reduction that leaves a scale of 0.5 to 1 for the warp
    if k > 1 and (x1 - x0) >= 2 * k and (y1 - y0) >= 2 * k:
        w, h = (x1 - x0) // k, (y1 - y0) // k
        region = cv2.resize(image[y0 : y0 + h * k, x0 : x0 + w * k], (w, h), interpolation=cv2.INTER_AREA)
        # reduced pixel i averages region pixels k*i .. k*i+k-1: its centre is at k*i + (k-1)/2
        offset = np.array([x0 + (k - 1) / 2.0, y0 + (k - 1) / 2.0])
        moved = matrix.copy()
        moved[:, :2] = matrix[:, :2] * k
        moved[:, 2] = matrix[:, 2] + matrix[:, :2] @ offset
        rest = 1.0 / (scale * k)
        if rest > 1.0 / 0.7:  # still shrinking enough to alias: blur for the rest
            s2 = (rest - 1.0) / 2.0
            region = cv2.GaussianBlur(region, (0, 0), sigmaX=s2, sigmaY=s2)
        return region, moved
    region = cv2.GaussianBlur(np.ascontiguousarray(image[y0:y1, x0:x1]), (ksize, ksize), sigmaX=sigma, sigmaY=sigma)
    moved = matrix.copy()
    moved[:, 2] = matrix[:, 2] + matrix[:, :2] @ np.array([x0, y0], np.float64)
    return region, moved
