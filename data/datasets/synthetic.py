"""Synthetic, cartoon-like faces with exact 68-point 3D landmarks and pose, for tests and smoke runs.

What this is: a seeded generator that deforms the package's frontal mean shape (random identity and
expression), rotates it with the package's pose convention (:mod:`fa3d.runtime.pose`), and paints a
face-like picture through the resulting landmarks with OpenCV: an ellipsoid head shaded by a random
light, a neck, hair, brows, eyes, nose and lips, a cluttered background, random occluders, blur and
noise. The landmarks are exactly where the features are drawn, so the data are useful to check
plumbing (preprocessing, training loops, exporters, trackers) and for smoke training runs.

What this is not: realistic. The faces look like drawings; a model trained on them will not work on
real faces. It is not a substitute for real data and must never be used to claim accuracy.

Landmarks follow the package convention: (68, 3) float32, 0-based pixels, x right, y down, z the
relative depth in pixel scale (larger = nearer the camera), with every point given, hidden or not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np

from fa3d.runtime import pose, schema
from .videofile import mp4v_writer
from fa3d.runtime.preprocess import landmark_box

# head ellipsoid in the model frame (centre, semi-axes): it contains the jaw and the inner face
_HEAD_CENTRE = np.array([0.0, 0.1, -0.6])
_HEAD_AXES = np.array([1.3, 1.65, 1.35])
# neck: an elliptic cylinder along the model's y axis
_NECK_CENTRE = np.array([0.0, 0.0, -0.8])
_NECK_AXES = np.array([0.55, 0.0, 0.6])
_NECK_TOP = -0.2
#: the model-frame extent used to size a face in the image (about the jaw width of the mean shape)
_FACE_UNITS = 2.4


@dataclass(frozen=True)
class SyntheticFace:
    """One synthetic sample: ``image`` (H, W, 3) uint8 BGR; ``landmarks`` (68, 3) float32 pixels;
    ``ypr`` (3,) float32 yaw, pitch, roll in degrees; ``rotation`` (3, 3) float32 (model -> view);
    ``box`` (4,) float32 tight landmark box x1, y1, x2, y2."""

    image: np.ndarray
    landmarks: np.ndarray
    ypr: np.ndarray
    rotation: np.ndarray
    box: np.ndarray


@dataclass(frozen=True)
class _Look:
    """Colours and lighting of one face (BGR floats in 0..255)."""

    skin: np.ndarray
    hair: np.ndarray
    lips: np.ndarray
    iris: np.ndarray
    brow: np.ndarray
    light: np.ndarray  # unit vector in the view frame (y up, z towards the viewer)
    ambient: float
    bald: bool
    gaze: np.ndarray  # (2,) iris offset as a fraction of the eye width / height


# ----------------------------------------------------------------------------------------------- shape

def _symmetric(d: np.ndarray) -> np.ndarray:
    """Make a (68, 3) displacement left-right symmetric (x mirrored with the landmark permutation)."""
    m = d[schema.MIRROR].copy()
    m[:, 0] *= -1
    return (d + m) / 2


def _identity_shape(rng: np.random.Generator) -> np.ndarray:
    """The mean shape with random, mostly symmetric identity variation (model frame)."""
    s = schema.mean_shape().astype(np.float64).copy()
    g = schema.GROUPS

    def idx(*names: str) -> np.ndarray:
        return np.concatenate([np.arange(g[n].start, g[n].stop) for n in names])

    # eyes: spacing and size
    spacing = rng.normal(0, 0.03)
    for name, sign in (("left_eye", -1), ("right_eye", 1)):
        i = idx(name)
        c = s[i].mean(0)
        s[i] = c + (s[i] - c) * rng.uniform(0.85, 1.15)
        s[i, 0] += sign * spacing
    # brows: height and thickness is drawn later
    s[idx("left_brow", "right_brow"), 1] += rng.normal(0, 0.03)
    # nose: length and width
    nb = idx("nose_base")
    s[nb, 1] += rng.normal(0, 0.04)
    s[nb, 0] *= rng.uniform(0.85, 1.2)
    # mouth: width and height
    mo = idx("outer_mouth", "inner_mouth")
    s[mo, 0] *= rng.uniform(0.85, 1.15)
    s[mo, 1] += rng.normal(0, 0.03)
    # jaw: width of the lower face
    jaw = idx("jaw")
    lower = np.clip((0.5 - s[jaw, 1]) / 1.7, 0, 1)
    s[jaw, 0] *= 1 + rng.normal(0, 0.05) * lower
    # small per-point noise, mostly symmetric
    s += _symmetric(rng.normal(0, 0.012, s.shape)) + rng.normal(0, 0.005, s.shape)
    # global proportions
    s *= np.array([rng.uniform(0.93, 1.07), rng.uniform(0.93, 1.07), rng.uniform(0.92, 1.08)])
    return s


def _expression(s: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply a random expression: mouth opening, smile, brow raise, blink (model frame)."""
    s = s.copy()
    if rng.random() < 0.45:  # mouth open
        o = rng.uniform(0.03, 0.25)
        s[55:60, 1] -= o
        s[65:68, 1] -= 0.9 * o
        s[[48, 54, 60, 64], 1] -= 0.4 * o
        s[5:12, 1] -= o * np.array([0.3, 0.6, 0.85, 1.0, 0.85, 0.6, 0.3])
    if rng.random() < 0.4:  # smile: corners out and up
        sm = rng.uniform(0.02, 0.1)
        for i, sign, w in ((48, -1, 1.0), (54, 1, 1.0), (60, -1, 0.9), (64, 1, 0.9),
                           (49, -1, 0.5), (53, 1, 0.5), (59, -1, 0.5), (55, 1, 0.5)):
            s[i, 0] += sign * 0.6 * sm * w
            s[i, 1] += sm * w
    if rng.random() < 0.4:  # brow raise (or frown when negative)
        br = rng.uniform(-0.04, 0.12)
        s[17:27, 1] += br * np.array([0.8, 1.0, 1.0, 0.9, 0.7, 0.7, 0.9, 1.0, 1.0, 0.8])
    if rng.random() < 0.25:  # blink: upper lids towards the lower lids
        b = rng.uniform(0.3, 1.0)
        for up, low in ((37, 41), (38, 40), (43, 47), (44, 46)):
            s[up] += 0.9 * b * (s[low] - s[up])
    return s


# ------------------------------------------------------------------------------------------ geometry

def _project(model_pts: np.ndarray, rot: np.ndarray, scale: float, centre: np.ndarray) -> np.ndarray:
    """Model frame -> image landmarks: x = s X + tx, y = -(s Y) + ty, z = s Z (view frame y negated)."""
    v = scale * model_pts @ rot.T
    out = pose.image_to_view(v)
    out[..., 0] += centre[0]
    out[..., 1] += centre[1]
    return out


def _raycast(shape_hw: tuple[int, int], rot: np.ndarray, scale: float, centre: np.ndarray,
             q_centre: np.ndarray, q_axes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Orthographic ray cast of an axis-aligned model-frame quadric (ellipsoid or cylinder: axis 0 = ignored).

    Returns per pixel: hit mask, view depth z (image z), view-frame unit normal (H, W, 3) and the
    model-frame point (H, W, 3) of the nearest intersection.
    """
    h, w = shape_hw
    inv = np.where(q_axes > 0, 1.0 / np.maximum(q_axes, 1e-9) ** 2, 0.0)
    d = np.diag(inv)
    q = rot @ d @ rot.T / scale ** 2
    # quadric centre in the view frame (y up); pixel (u, v) has view coordinates (u - cx, -(v - cy))
    c_view = scale * rot @ q_centre
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    dx = xs - centre[0] - c_view[0]
    dy = -(ys - centre[1]) - c_view[1]
    a = q[2, 2]
    b = 2 * (q[2, 0] * dx + q[2, 1] * dy)
    c = q[0, 0] * dx * dx + 2 * q[0, 1] * dx * dy + q[1, 1] * dy * dy - 1.0
    if abs(a) < 1e-12:
        hit = np.zeros((h, w), bool)
        dz = np.zeros((h, w))
    else:
        disc = b * b - 4 * a * c
        hit = disc >= 0
        dz = (-b + np.sqrt(np.maximum(disc, 0))) / (2 * a)  # the nearer root (larger z)
    p = np.stack([dx, dy, dz], axis=-1)
    n = p @ q  # q is symmetric: gradient direction
    n /= np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-12)
    model = (p / scale) @ rot + q_centre  # R^T p / s + centre
    z_img = dz + c_view[2]
    return hit, z_img, n, model


def _fill(img: np.ndarray, pts: np.ndarray, colour, shift: int = 4) -> None:
    p = np.round(np.asarray(pts)[:, :2] * (1 << shift)).astype(np.int32)
    cv2.fillPoly(img, [p], colour, lineType=cv2.LINE_AA, shift=shift)


def _line(img: np.ndarray, pts: np.ndarray, colour, thickness: int, closed: bool = False, shift: int = 4) -> None:
    p = np.round(np.asarray(pts)[:, :2] * (1 << shift)).astype(np.int32)
    cv2.polylines(img, [p], closed, colour, max(1, thickness), lineType=cv2.LINE_AA, shift=shift)


def _ellipse(img: np.ndarray, centre, axes, angle: float, colour, shift: int = 4) -> None:
    c = tuple(int(round(v * (1 << shift))) for v in centre)
    ax = tuple(max(1, int(round(v * (1 << shift)))) for v in axes)
    cv2.ellipse(img, c, ax, angle, 0, 360, colour, -1, lineType=cv2.LINE_AA, shift=shift)


def _facing(model_pt: np.ndarray, rot: np.ndarray) -> float:
    """View-frame z of the head ellipsoid's normal at a model point (> 0: faces the camera)."""
    n = (model_pt - _HEAD_CENTRE) / _HEAD_AXES ** 2
    n = rot @ (n / np.linalg.norm(n))
    return float(n[2])


# ------------------------------------------------------------------------------------------- drawing

def clutter_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A face-free float32 (h, w, 3) BGR frame: a colour gradient with random shapes (values may leave 0..255)."""
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    ang = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    t = (xs * np.cos(ang) + ys * np.sin(ang))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1.0)
    img = (c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]).astype(np.float32)
    for _ in range(rng.integers(3, 10)):
        col = tuple(float(v) for v in rng.uniform(0, 255, 3))
        kind = rng.integers(0, 3)
        x, y = rng.uniform(0, w), rng.uniform(0, h)
        r = rng.uniform(0.03, 0.25) * min(h, w)
        if kind == 0:
            cv2.circle(img, (int(x), int(y)), int(r), col, -1, cv2.LINE_AA)
        elif kind == 1:
            cv2.rectangle(img, (int(x - r), int(y - r / 2)), (int(x + r), int(y + r / 2)), col, -1)
        else:
            x2, y2 = rng.uniform(0, w), rng.uniform(0, h)
            cv2.line(img, (int(x), int(y)), (int(x2), int(y2)), col, int(rng.integers(1, 6)), cv2.LINE_AA)
    img += rng.normal(0, rng.uniform(2, 10), img.shape).astype(np.float32)
    return img


def _random_look(rng: np.random.Generator) -> _Look:
    tone = rng.uniform(0, 1)
    skin = np.array([60 + 120 * tone, 85 + 110 * tone, 120 + 115 * tone]) * rng.uniform(0.9, 1.1, 3)
    hair = rng.choice([np.array([20, 25, 35]), np.array([30, 60, 110]), np.array([90, 140, 190]),
                       np.array([120, 120, 125]), np.array([15, 15, 15])]) * rng.uniform(0.8, 1.2)
    lips = skin * np.array([0.55, 0.55, 0.85]) + np.array([0, 0, 20])
    iris = rng.choice([np.array([40, 60, 90]), np.array([120, 90, 40]), np.array([60, 110, 70]),
                       np.array([25, 35, 50])])
    light = np.array([rng.uniform(-1, 1), rng.uniform(-0.6, 1), rng.uniform(0.5, 1.5)])
    return _Look(skin=np.clip(skin, 0, 255), hair=hair, lips=np.clip(lips, 0, 255), iris=iris,
                 brow=np.minimum(hair, skin * 0.45), light=light / np.linalg.norm(light),
                 ambient=float(rng.uniform(0.35, 0.6)), bald=bool(rng.random() < 0.15),
                 gaze=rng.uniform(-0.15, 0.15, 2))


def _offset_points(model: np.ndarray, idx, dy: float) -> np.ndarray:
    p = model[list(idx)].copy()
    p[:, 1] += dy
    return p


def _draw_face(canvas: np.ndarray, model: np.ndarray, rot: np.ndarray, scale: float, centre: np.ndarray,
               look: _Look) -> np.ndarray:
    """Paint one face onto ``canvas`` (H, W, 3) float32 in place; returns its image landmarks (68, 3)."""
    h, w = canvas.shape[:2]
    lm = _project(model, rot, scale, centre)
    mask, use_neck, hit_h, m_h, normal = _surfaces((h, w), model, rot, scale, centre)
    albedo = _albedo((h, w), look, use_neck, hit_h, m_h)
    _paint_features(albedo, model, lm, rot, scale, centre, look)
    # shading by the light direction on the surface normals
    lam = np.clip(normal @ look.light, 0, 1).astype(np.float32)
    shade = look.ambient + (1 - look.ambient) * lam
    out = albedo * shade[..., None]
    canvas[mask] = out[mask]
    return lm


def _surfaces(shape: tuple[int, int], model: np.ndarray, rot: np.ndarray, scale: float, centre: np.ndarray):
    """Per pixel: which pixels the face covers, which of them are neck, the head hits, the head model
    coordinates and the surface normals (head ellipsoid and neck cylinder, nearest wins; cut at the jaw)."""
    h, w = shape

    def proj(p: np.ndarray) -> np.ndarray:
        return _project(p, rot, scale, centre)

    hit_h, z_h, n_h, m_h = _raycast((h, w), rot, scale, centre, _HEAD_CENTRE, _HEAD_AXES)
    hit_n, z_n, n_n, m_n = _raycast((h, w), rot, scale, centre, _NECK_CENTRE, _NECK_AXES)
    hit_n &= m_n[..., 1] < _NECK_TOP
    # the face ends at the jaw line: carve the region below the projected jaw out of the head
    jaw = model[0:17]
    left_out = jaw[0] + np.array([-0.35, 0.0, 0.0])
    right_out = jaw[16] + np.array([0.35, 0.0, 0.0])
    line3d = np.concatenate([left_out[None], jaw, right_out[None]])
    down = line3d - np.array([0.0, 4.0, 0.0])
    line2d, down2d = proj(line3d), proj(down)
    below = np.zeros((h, w), np.uint8)
    for i in range(len(line3d) - 1):
        if _facing((line3d[i] + line3d[i + 1]) / 2, rot) < -0.35:
            continue  # a segment behind the head: it hides nothing
        quad = np.stack([line2d[i], line2d[i + 1], down2d[i + 1], down2d[i]])
        _fill(below, quad, 1)
    hit_h &= below == 0
    hit_h &= ~((m_h[..., 1] < -0.25) & (m_h[..., 2] < -1.0))  # the nape: no skull below the ears at the back
    z_h = np.where(hit_h, z_h, -np.inf)
    z_n = np.where(hit_n, z_n, -np.inf)
    use_neck = hit_n & (z_n > z_h)
    mask = hit_h | hit_n
    normal = np.where(use_neck[..., None], n_n, n_h)
    return mask, use_neck, hit_h, m_h, normal


def _albedo(shape: tuple[int, int], look: _Look, use_neck: np.ndarray, hit_h: np.ndarray,
            m_h: np.ndarray) -> np.ndarray:
    """Skin, a darker neck, hair on the skull (unless bald): (H, W, 3) float32."""
    h, w = shape
    albedo = np.empty((h, w, 3), np.float32)
    albedo[:] = look.skin
    albedo[use_neck] *= 0.82
    if not look.bald:
        mx, my, mz = m_h[..., 0], m_h[..., 1], m_h[..., 2]
        hairline = 1.18 - 0.45 * np.clip((np.abs(mx) - 0.55) / 0.6, 0, 1)
        back = np.clip((-mz - 0.35) / 1.0, 0, 1)
        hairline = hairline - back * 1.6
        hair = hit_h & ~use_neck & (my > hairline)
        albedo[hair] = look.hair

    return albedo


def _paint_features(layer: np.ndarray, model: np.ndarray, lm: np.ndarray, rot: np.ndarray, scale: float,
                    centre: np.ndarray, look: _Look) -> None:
    """Brows, eyes, nose and mouth painted on ``layer`` in depth order; parts turned away are skipped."""
    h, w = layer.shape[:2]

    def proj(p: np.ndarray) -> np.ndarray:
        return _project(p, rot, scale, centre)

    feats = []

    def add(name: str, anchor: np.ndarray, fn, min_facing: float = 0.08) -> None:
        f = _facing(anchor, rot)
        if f > min_facing:
            feats.append((float(proj(anchor[None])[0, 2]), name, fn))

    px = scale  # pixels per model unit
    thick = max(1, int(round(0.025 * px)))

    for side, br in (("l", range(17, 22)), ("r", range(22, 27))):
        def brow(br=br):
            up = proj(_offset_points(model, br, 0.045))
            lo = proj(_offset_points(model, br, -0.03))
            _fill(layer, np.concatenate([up, lo[::-1]]), look.brow.tolist())
        add("brow" + side, model[list(br)].mean(0), brow)

    for side, ey in (("l", range(36, 42)), ("r", range(42, 48))):
        def eye(ey=ey):
            e = lm[list(ey)]
            width = np.linalg.norm(e[3, :2] - e[0, :2])
            height = (np.linalg.norm(e[1, :2] - e[5, :2]) + np.linalg.norm(e[2, :2] - e[4, :2])) / 2
            if height < 0.12 * width:  # closed: a lid line
                _line(layer, e[[0, 1, 2, 3]], (look.brow * 0.8).tolist(), thick)
                return
            eye_mask = np.zeros((h, w), np.uint8)
            _fill(eye_mask, e, 255)
            sub = np.zeros_like(layer)
            sub[:] = (235, 238, 240)
            c = e[:, :2].mean(0) + look.gaze * np.array([width, height]) * 0.5
            r = 0.28 * width
            _ellipse(sub, c, (r, r), 0, look.iris.tolist())
            _ellipse(sub, c, (0.45 * r, 0.45 * r), 0, (10, 10, 10))
            a = (eye_mask.astype(np.float32) / 255.0)[..., None]
            layer[:] = layer * (1 - a) + sub * a
            _line(layer, e, (look.brow * 0.7).tolist(), thick, closed=True)
            _line(layer, e[[0, 1, 2, 3]], (25, 25, 25), thick)
        add("eye" + side, model[list(ey)].mean(0), eye)

    def nose():
        shade = (look.skin * 0.6).tolist()
        _line(layer, lm[27:31], (look.skin * 0.8).tolist(), thick)
        _line(layer, lm[[31, 32, 33, 34, 35]], shade, thick)
        _line(layer, lm[[30, 31]], shade, thick)
        _line(layer, lm[[30, 35]], shade, thick)
        for i in (32, 34):
            r = max(1.0, 0.03 * px)
            _ellipse(layer, lm[i, :2], (r * 1.3, r), 0, (look.skin * 0.35).tolist())
    add("nose", model[30], nose, min_facing=-0.3)

    def mouth():
        _fill(layer, lm[48:60], look.lips.tolist())
        inner = lm[60:68]
        gap = np.linalg.norm(lm[62, :2] - lm[66, :2])
        if gap > 0.02 * px:
            _fill(layer, inner, (30, 25, 60))
            teeth = proj(model[60:65] - np.array([0.0, min(0.03, 0.3 * gap / px), 0.0]))
            _line(layer, teeth, (215, 220, 225), max(1, int(round(0.04 * px))))
        _line(layer, inner, (look.lips * 0.5).tolist(), thick, closed=True)
    add("mouth", model[[51, 57]].mean(0), mouth, min_facing=-0.1)

    for _, _, fn in sorted(feats, key=lambda t: t[0]):
        fn()


def _occluders(rng: np.random.Generator, img: np.ndarray, box: np.ndarray) -> None:
    x1, y1, x2, y2 = box
    fw, fh = x2 - x1, y2 - y1
    for _ in range(int(rng.integers(1, 3))):
        col = tuple(float(v) for v in rng.uniform(0, 255, 3))
        if rng.random() < 0.5:  # a bar or rectangle overlapping the face
            cx, cy = rng.uniform(x1, x2), rng.uniform(y1, y2)
            hw, hh = rng.uniform(0.1, 0.5) * fw, rng.uniform(0.05, 0.3) * fh
            ang = rng.uniform(-60, 60)
            rect = cv2.boxPoints(((float(cx), float(cy)), (float(2 * hw), float(2 * hh)), float(ang)))
            cv2.fillPoly(img, [np.round(rect).astype(np.int32)], col, cv2.LINE_AA)
        else:  # a hand-like blob: palm and fingers
            skin = tuple(float(v) for v in np.array([90, 130, 180]) * rng.uniform(0.6, 1.2))
            side = rng.choice([-1, 1])
            cx = x1 + fw * (0.5 + side * rng.uniform(0.2, 0.55))
            cy = rng.uniform(y1 + 0.3 * fh, y2)
            pr = rng.uniform(0.15, 0.25) * fw
            ang = rng.uniform(0, 360)
            cv2.ellipse(img, (int(cx), int(cy)), (int(pr), int(pr * 1.2)), ang, 0, 360, skin, -1, cv2.LINE_AA)
            for k in range(4):
                a = np.radians(ang - 90 + (k - 1.5) * 18)
                fx, fy = cx + 1.7 * pr * np.cos(a), cy + 1.7 * pr * np.sin(a)
                cv2.ellipse(img, (int(fx), int(fy)), (int(pr * 0.6), int(max(2, pr * 0.18))),
                            np.degrees(a), 0, 360, skin, -1, cv2.LINE_AA)


def _finish(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    sigma = rng.uniform(0.3, 1.3)
    img = cv2.GaussianBlur(img, (0, 0), sigma)
    img = img + rng.normal(0, rng.uniform(1, 7), img.shape).astype(np.float32)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- API

def _size_hw(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` is an int (square) or (width, height), as OpenCV writes sizes."""
    if isinstance(size, (int, np.integer)):
        w = h = int(size)
    else:
        w, h = (int(v) for v in size)
    if w < 16 or h < 16:
        raise ValueError(f"image size must be at least 16x16 pixels, got {size}")
    return h, w


def _check_range(name: str, r: tuple[float, float], lo: float, hi: float) -> tuple[float, float]:
    a, b = float(r[0]), float(r[1])
    if not (lo <= a <= b <= hi):
        raise ValueError(f"{name}={r}: expected (min, max) with {lo} <= min <= max <= {hi}")
    return a, b


def synth_face(seed: int, size: int | tuple[int, int] = 256, *, yaw_range=(-90, 90), pitch_range=(-40, 40),
               roll_range=(-35, 35), face_scale=(0.35, 0.6), occluders: bool = True) -> SyntheticFace:
    """One synthetic face, fully determined by ``seed``.

    ``size`` is an int (square image) or (width, height). Angles are drawn uniformly from the ranges
    (degrees, the package convention). ``face_scale`` is the face width (about the jaw width of a
    frontal face) as a fraction of the image's shorter side. With ``occluders`` about a third of the
    samples get one or two random occluders (bars, a hand-like blob) over the face. The whole face's
    landmark box lies inside the image.
    """
    h, w = _size_hw(size)
    yaw_range = _check_range("yaw_range", yaw_range, -90, 90)
    pitch_range = _check_range("pitch_range", pitch_range, -90, 90)
    roll_range = _check_range("roll_range", roll_range, -180, 180)
    face_scale = _check_range("face_scale", face_scale, 0.01, 1.0)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5F3D]))

    model = _expression(_identity_shape(rng), rng)
    ypr = np.array([rng.uniform(*yaw_range), rng.uniform(*pitch_range), rng.uniform(*roll_range)])
    rot = pose.euler_to_matrix(ypr)
    scale = rng.uniform(*face_scale) * min(h, w) / _FACE_UNITS
    # place the face so that its landmark box lies inside the image (shrink if it cannot)
    rel = _project(model, rot, scale, np.zeros(2))
    lo, hi = rel[:, :2].min(0), rel[:, :2].max(0)
    ext = hi - lo
    avail = np.array([w - 1, h - 1], dtype=np.float64) * 0.96
    shrink = min(1.0, float(np.min(avail / ext)))
    if shrink < 1.0:
        scale *= shrink
        rel = _project(model, rot, scale, np.zeros(2))
        lo, hi = rel[:, :2].min(0), rel[:, :2].max(0)
    margin = 0.02 * np.array([w, h])
    tmin = margin - lo
    tmax = np.array([w - 1, h - 1]) - margin - hi
    centre = np.array([rng.uniform(tmin[0], max(tmin[0], tmax[0])), rng.uniform(tmin[1], max(tmin[1], tmax[1]))])

    canvas = clutter_background(rng, h, w)
    look = _random_look(rng)
    lm = _draw_face(canvas, model, rot, scale, centre, look)
    box = landmark_box(lm)[0]
    if occluders and rng.random() < 0.35:
        _occluders(rng, canvas, box)
    image = _finish(rng, canvas)
    return SyntheticFace(image=image, landmarks=lm.astype(np.float32), ypr=ypr.astype(np.float32),
                         rotation=rot.astype(np.float32), box=box.astype(np.float32))


def synth_faces(n: int, seed: int, **kw) -> list[SyntheticFace]:
    """``n`` faces with seeds derived from ``seed`` (sample i of seed s is ``synth_face(s * 1_000_003 + i)``).

    Keyword arguments are those of :func:`synth_face`.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    return [synth_face(int(seed) * 1_000_003 + i, **kw) for i in range(n)]


def synthetic_video(path: str | os.PathLike, n_frames: int = 60, size: tuple[int, int] = (640, 480), seed: int = 0,
                    fps: float = 30, faces: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
    """Write an mp4 (mp4v) clip of ``faces`` synthetic faces moving smoothly; return the ground truth.

    ``size`` is (width, height). Each face translates, changes scale and oscillates in yaw (up to
    about +-70 deg), pitch and roll. Returns one ``(landmarks, ypr)`` per frame with a leading face axis:
    landmarks (faces, 68, 3) float32 pixels and ypr (faces, 3) float32 degrees. The file is written
    atomically and read back to check its frame count.
    """
    if n_frames < 1 or faces < 1:
        raise ValueError(f"need n_frames >= 1 and faces >= 1, got {n_frames} and {faces}")
    h, w = _size_hw(size)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x71DE0]))
    bg = clutter_background(rng, h, w)
    tracks = []
    for k in range(faces):
        model = _expression(_identity_shape(rng), rng)
        base = rng.uniform(0.22, 0.32) * min(h, w) / _FACE_UNITS / max(1, faces) ** 0.3
        cx0 = w * (k + 0.5) / faces
        tracks.append(dict(
            model=model, look=_random_look(rng), base=base,
            c0=np.array([cx0, h * 0.5]),
            amp=np.array([rng.uniform(0.05, 0.15) * w / faces, rng.uniform(0.05, 0.15) * h]),
            amp_ang=np.array([rng.uniform(40, 70), rng.uniform(10, 25), rng.uniform(10, 25)]),
            freq=rng.uniform(0.5, 1.5, 6), phase=rng.uniform(0, 2 * np.pi, 6)))
    truth: list[tuple[np.ndarray, np.ndarray]] = []
    with mp4v_writer(path, fps, (w, h), n_frames) as write:
        for f in range(n_frames):
            t = 2 * np.pi * f / max(n_frames, 2)
            frame = bg + rng.normal(0, 2, bg.shape).astype(np.float32)
            lms, yprs = [], []
            order = []
            for tr in tracks:
                fq, ph = tr["freq"], tr["phase"]
                ypr = tr["amp_ang"] * np.sin(fq[:3] * t + ph[:3])
                scale = tr["base"] * (1 + 0.25 * np.sin(fq[3] * t + ph[3]))
                centre = tr["c0"] + tr["amp"] * np.sin(fq[4:6] * t + ph[4:6])
                order.append((scale, tr, ypr, centre))
            results = {}
            for scale, tr, ypr, centre in sorted(order, key=lambda o: o[0]):  # far (small) faces first
                lm = _draw_face(frame, tr["model"], pose.euler_to_matrix(ypr), scale, centre, tr["look"])
                results[id(tr)] = (lm, ypr)
            for tr in tracks:
                lm, ypr = results[id(tr)]
                lms.append(lm)
                yprs.append(ypr)
            frame = cv2.GaussianBlur(frame, (0, 0), 0.6)
            write(np.clip(np.round(frame), 0, 255).astype(np.uint8))
            truth.append((np.asarray(lms, np.float32), np.asarray(yprs, np.float32)))
    return truth
