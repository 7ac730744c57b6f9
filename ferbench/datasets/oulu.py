"""Oulu-CASIA NIR&VIS: where its layout (label = folder, mode = imaging system x illumination) is parsed, and its replica.

Native layout::

    OriginalImg/{VL,NI}/{Strong,Weak,Dark}/P001/{Anger,Disgust,Fear,Happiness,Sadness,Surprise}/000.jpeg ...

320x240 frames at 25 fps, 80 subjects (P001-P080), each sequence neutral -> apex (onset 0, apex = last frame).
VL is the visible-light camera, NI the near-infrared one; Strong/Weak/Dark the illumination. Both go into
`Sample.mode`, and the sample id keeps them (`VL_Strong_P001_Anger`) because one subject and expression is
recorded in all six modes. The standard subset (VL/Strong, 480 sequences) and the unseen-mode splits are chosen by
the protocols. Windows' `Thumbs.db` files are skipped and counted.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ferbench.datasets import register_dataset
from ferbench.datasets._media import list_entries, list_frames
from ferbench.datasets.base import DatasetAdapter, Sample, ScanResult
from ferbench.errors import DatasetError, FerbenchError

#: Class names; the native folder of class i is FOLDERS[i].
CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
FOLDERS: tuple[str, ...] = ("Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise")
SYSTEMS: tuple[str, ...] = ("VL", "NI")
ILLUMINATIONS: tuple[str, ...] = ("Strong", "Weak", "Dark")
FPS = 25.0
TOP = "OriginalImg"


def _canonical(name: str, choices: tuple[str, ...]) -> str | None:
    """The native spelling of a folder name compared without case (`vl` -> `VL`), or None if it is not one."""
    return next((c for c in choices if c.lower() == name.lower()), None)


def parse_modes(modes: list[str] | None) -> list[tuple[str, str]]:
    """`["VL/Strong", "NI"]` -> [(VL, Strong), (NI, Strong), (NI, Weak), (NI, Dark)]; None means all six modes.

    An entry names a system, an illumination, or both (`VL/Strong` or `VL_Strong`); a single part stands for
    every mode it belongs to.
    """
    all_modes = [(s, i) for s in SYSTEMS for i in ILLUMINATIONS]
    if not modes:
        return all_modes
    chosen: list[tuple[str, str]] = []
    for entry in modes:
        parts = entry.replace("_", "/").split("/")
        systems = [p for p in (_canonical(x, SYSTEMS) for x in parts) if p]
        lights = [p for p in (_canonical(x, ILLUMINATIONS) for x in parts) if p]
        if len(systems) + len(lights) != len(parts) or len(systems) > 1 or len(lights) > 1:
            raise FerbenchError(
                f"unknown Oulu-CASIA mode '{entry}': use SYSTEM/ILLUMINATION with SYSTEM in {'/'.join(SYSTEMS)} "
                f"and ILLUMINATION in {'/'.join(ILLUMINATIONS)} (e.g. VL/Strong), or one of them alone"
            )
        chosen += [m for m in all_modes if (not systems or m[0] == systems[0]) and (not lights or m[1] == lights[0]) and m not in chosen]
    return chosen


@register_dataset
class OuluCasia(DatasetAdapter):
    name = "oulu-casia"
    title = "Oulu-CASIA NIR&VIS"
    obtain = "the University of Oulu, Center for Machine Vision and Signal Analysis (the Oulu-CASIA NIR&VIS request form; a licence agreement)"
    classes = CLASSES
    layout = (
        "OriginalImg/{VL,NI}/{Strong,Weak,Dark}/P001/{Anger,Disgust,Fear,Happiness,Sadness,Surprise}/000.jpeg "
        "(label = folder; system x illumination = mode)"
    )
    fps = FPS
    clip_length = 22  # yu2018
    phases = "neutral-apex"
    emotions = CLASSES

    def scan(self, root: Path) -> ScanResult:
        """Read every expression folder of every mode; the label is the folder name."""
        root = Path(root)
        top = root / TOP if (root / TOP).is_dir() else root  # accept OriginalImg itself as the root
        result = ScanResult(dataset=self.name, root=root, classes=self.classes)
        found_system = False
        for system_dir in list_entries(top, result.skipped):
            system = _canonical(system_dir.name, SYSTEMS)
            if system is None:
                result.problems.append(f"{system_dir}: not an imaging system folder (expected VL or NI); ignored")
                continue
            found_system = True
            for light_dir in list_entries(system_dir, result.skipped):
                light = _canonical(light_dir.name, ILLUMINATIONS)
                if light is None:
                    result.problems.append(f"{light_dir}: not an illumination folder (expected Strong, Weak or Dark); ignored")
                    continue
                for subject_dir in list_entries(light_dir, result.skipped):
                    where = f"{system}_{light}_{subject_dir.name}"
                    for class_dir in result.read_each(where, lambda: list_entries(subject_dir, result.skipped)) or []:
                        sample = result.read_each(
                            f"{where}_{class_dir.name}",
                            lambda: self._read_sequence(system, light, subject_dir.name, class_dir, result))
                        if sample is not None:
                            result.samples.append(sample)
        if not found_system:
            raise DatasetError(root / TOP, "expected the Oulu-CASIA folder 'OriginalImg' holding VL/ and NI/ (e.g. OriginalImg/VL/Strong/P001/Anger/000.jpeg)")
        counts = {f"{s}/{i}": 0 for s in SYSTEMS for i in ILLUMINATIONS}
        for s in result.samples:
            counts[f"{s.mode['system']}/{s.mode['illumination']}"] += 1
        result.notes.append(
            "sequences per mode: " + ", ".join(f"{k} {v}" for k, v in counts.items())
            + " (the standard subset VL/Strong has 480 in the real data)"
        )
        return result

    def _read_sequence(self, system: str, light: str, subject: str, class_dir: Path, result: ScanResult) -> Sample | None:
        folder = _canonical(class_dir.name, FOLDERS)
        if folder is None:
            result.problems.append(f"{class_dir}: not an expression folder (expected one of {', '.join(FOLDERS)}); ignored")
            return None
        frames = list_frames(class_dir, result.skipped)
        if not frames:
            result.problems.append(f"{class_dir}: no image frames; sequence left out")
            return None
        return Sample(
            id=f"{system}_{light}_{subject}_{folder}",
            dataset=self.name,
            subject=subject,
            label=FOLDERS.index(folder),
            frames=frames,
            fps=FPS,
            onset=0,
            apex=len(frames) - 1,
            offset=None,
            mode={"system": system, "illumination": light},
        )

    def write_replica(self, out: Path, subjects: int = 3, seed: int = 0, modes: list[str] | None = None,
                      intensity: float = 1.0) -> list[Sample]:
        """Oulu-CASIA layout with animated faces: every subject shows all six expressions in each chosen mode.

        NI frames get the grey high-contrast near-infrared look, Weak/Dark the animator's dimmed side lighting.
        `Thumbs.db` files are written where Windows leaves them (subject and expression folders of the first subject).
        """
        from ferbench.synth.faces import CLASS_AUS, FaceAnimator, expression_curve

        chosen = parse_modes(modes)
        out = Path(out)
        anim = FaceAnimator(seed=seed, intensity=intensity)
        rng = np.random.default_rng([seed, 0x0C])
        samples: list[Sample] = []
        for system, light in chosen:
            for i in range(subjects):
                subject = f"P{i + 1:03d}"
                ident = anim.identity(i)
                for label, folder in enumerate(FOLDERS):
                    n = int(np.clip(round(rng.lognormal(np.log(14.0), 0.3)), 9, 24))  # real: 9 to about 70, most 10-20
                    seq_dir = out / TOP / system / light / subject / folder
                    seq_dir.mkdir(parents=True, exist_ok=True)
                    clip = anim.render_clip(
                        ident, CLASS_AUS[CLASSES[label]], expression_curve(n, 0, n - 1), (320, 240),
                        illumination=light.lower(), nir=system == "NI",
                    )
                    frames = []
                    for t, image in enumerate(clip):
                        frames.append(seq_dir / f"{t:03d}.jpeg")
                        cv2.imwrite(str(frames[-1]), image, [cv2.IMWRITE_JPEG_QUALITY, 92])
                    if i == 0 and label == 0:
                        (seq_dir / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
                        (seq_dir.parent / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1")
                    samples.append(
                        Sample(
                            id=f"{system}_{light}_{subject}_{folder}", dataset=self.name, subject=subject, label=label,
                            frames=frames, fps=FPS, onset=0, apex=n - 1, offset=None,
                            mode={"system": system, "illumination": light},
                        )
                    )
        return samples
