"""The fixed 468 -> 68 table: MediaPipe FaceMesh vertices to the 68 iBUG points.

Each iBUG point ``i`` is the mean of the FaceMesh vertices ``TABLE_468_TO_68[i] = (a, b)`` (``a == b``
means one vertex). The table is *our derived table*, a fixed literal (no data): for every iBUG point we
chose the FaceMesh vertex, or the pair of vertices among the 25 best single ones, whose mean minimises
the median 2D distance to the 3DDFA_V2 teacher's 68 points (``teacher_3ddfa_v2_mb05.npz``) over 542
aflw19k *train* crops on which FaceMesh found a face (600 drawn with seed 0, crops padded by 40 px).
The fitted target therefore follows 3DDFA's point semantics (those of AFLW2000-3D's ``pt3d_68``:
the jaw line of the 3D model, not the visible silhouette).

Measured error of the table (2D, pixels of the 120x120 crops), MediaPipe run with a 40 px pad:

* vs the 3DDFA_V2 teacher on the held-out val split (1,744 crops where FaceMesh found a face): median
  2.02 px over all points (mean 3.51 px; 68-point NME 4.41 % of the teacher's box); per-group medians:
  jaw 4.2, brows 2.2, nose 1.5, eyes 1.5, mouth 1.6 px. On the fitting split (train, 15,389 crops):
  2.01 px median, 4.38 % NME.
* vs the real AFLW points (val, visible, the 8 checked correspondences of ``schema.AFLW21_TO_IBUG68``):
  medians 1.9-3.1 px (eye corners 1.9-3.0, nose tip 2.7, mouth corners 2.3-3.1, chin 4.0), on a par
  with the 3DDFA teacher's own 2.0-2.8 px (chin 4.4 px).
"""

from __future__ import annotations

import itertools

import numpy as np

NUM_DENSE = 468

#: iBUG 68 index -> (FaceMesh vertex a, FaceMesh vertex b); the point is their mean
TABLE_468_TO_68: tuple[tuple[int, int], ...] = (
    (127, 127), (234, 93), (132, 93), (58, 132), (172, 172), (136, 136),
    (150, 149), (176, 176), (152, 152), (400, 377), (378, 379), (365, 365),
    (397, 397), (288, 361), (454, 288), (454, 323), (356, 356), (124, 68),
    (63, 105), (105, 66), (107, 105), (9, 52), (9, 282), (336, 334),
    (299, 444), (293, 334), (353, 298), (122, 417), (6, 5), (275, 3),
    (44, 275), (98, 97), (164, 59), (393, 60), (305, 164), (326, 327),
    (247, 144), (144, 223), (153, 222), (173, 155), (28, 120), (145, 163),
    (398, 362), (380, 442), (373, 443), (467, 373), (374, 390), (258, 349),
    (78, 57), (74, 39), (41, 164), (37, 302), (271, 164), (304, 269),
    (324, 287), (314, 375), (405, 17), (84, 314), (84, 84), (146, 84),
    (61, 78), (80, 12), (38, 312), (12, 310), (306, 308), (403, 14),
    (86, 317), (15, 88),
)


def _table_array(table=None) -> np.ndarray:
    t = np.asarray(TABLE_468_TO_68 if table is None else table, dtype=np.int64)
    if t.shape != (68, 2) or t.min() < 0 or t.max() >= NUM_DENSE:
        raise ValueError(f"a 468 -> 68 table must be (68, 2) vertex indices in [0, {NUM_DENSE}), got {t.shape}")
    return t


def map_dense_to_68(dense: np.ndarray, table=None) -> np.ndarray:
    """(..., 468, 3) FaceMesh points -> (..., 68, 3) iBUG points (float64), with the fixed table."""
    d = np.asarray(dense, dtype=np.float64)
    if d.shape[-2:] != (NUM_DENSE, 3):
        raise ValueError(f"expected (..., {NUM_DENSE}, 3) FaceMesh points, got shape {d.shape}")
    t = _table_array(table)
    return (d[..., t[:, 0], :] + d[..., t[:, 1], :]) / 2


def derive_table(dense: np.ndarray, target: np.ndarray, top_k: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Fit a table: ``dense`` (M, 468, >=2) and ``target`` (M, 68, >=2) in the same pixel frame.

    For every target point, the single vertices are ranked by their median 2D error, then every pair
    among the ``top_k`` best is tried as a mean. Returns the table (68, 2) and the per-point median
    errors (68,). This is how :data:`TABLE_468_TO_68` was made.
    """
    d = np.asarray(dense, dtype=np.float64)[..., :2]
    g = np.asarray(target, dtype=np.float64)[..., :2]
    if d.ndim != 3 or d.shape[1] != NUM_DENSE or g.ndim != 3 or g.shape[1] != 68 or len(d) != len(g):
        raise ValueError(f"expected dense (M, {NUM_DENSE}, 2|3) and target (M, 68, 2|3), got {d.shape}, {g.shape}")
    table = np.zeros((68, 2), np.int64)
    errs = np.zeros(68)
    for i in range(68):
        med = np.median(np.linalg.norm(d - g[:, None, i], axis=-1), axis=0)
        top = np.argsort(med)[:top_k]
        best = (med[top[0]], top[0], top[0])
        for a, b in itertools.combinations(top, 2):
            m = np.median(np.linalg.norm((d[:, a] + d[:, b]) / 2 - g[:, i], axis=-1))
            if m < best[0]:
                best = (m, a, b)
        errs[i], table[i] = best[0], best[1:]
    return table, errs
