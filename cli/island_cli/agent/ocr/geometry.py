"""The geometry of DB text detection, in numpy alone: the regions of a binary map
(8-connected components, labelled run by run), and the smallest rotated rectangle around
each region (a convex hull, then rotating calipers), as OpenCV's ``findContours`` and
``minAreaRect`` would give them to PaddleOCR's post-processing."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Region:
    points: np.ndarray  # (N, 2) x, y: the two ends of each of its horizontal runs
    score: float  # mean probability over its pixels


def regions(mask: np.ndarray, probability: np.ndarray, limit: int) -> list[Region]:
    """The 8-connected regions of ``mask`` (largest first, at most ``limit``)."""
    rows, starts, ends = _runs(mask)
    if rows.size == 0:
        return []
    labels = _label(rows, starts, ends)
    count = int(labels.max()) + 1
    cumulative = np.zeros((mask.shape[0], mask.shape[1] + 1))
    np.cumsum(probability, axis=1, out=cumulative[:, 1:])
    sums = cumulative[rows, ends] - cumulative[rows, starts]
    pixels = np.bincount(labels, weights=ends - starts, minlength=count)
    scores = np.bincount(labels, weights=sums, minlength=count) / pixels
    order = np.argsort(labels, kind="stable")
    bounds = np.cumsum(np.bincount(labels, minlength=count))[:-1]
    ends_xy = np.stack(
        [np.concatenate([starts, ends - 1]), np.concatenate([rows, rows])], axis=1
    ).astype(np.float64)
    found = []
    for label, members in enumerate(np.split(order, bounds)):
        points = np.concatenate([ends_xy[members], ends_xy[members + rows.size]])
        found.append((pixels[label], Region(points, float(scores[label]))))
    found.sort(key=lambda item: -item[0])
    return [region for _, region in found[:limit]]


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each horizontal run of set pixels: its row, first column and end (exclusive), in
    row-major order."""
    padded = np.zeros((mask.shape[0], mask.shape[1] + 2), dtype=np.int8)
    padded[:, 1:-1] = mask
    step = np.diff(padded, axis=1)
    rows, starts = np.nonzero(step == 1)
    _, ends = np.nonzero(step == -1)
    return rows, starts, ends


def _label(rows: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """A component number for each run: runs of adjacent rows that touch (diagonals too)
    are joined with a union-find."""
    parent = list(range(rows.size))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first = np.searchsorted(rows, np.arange(int(rows[-1]) + 2))
    row_starts, row_ends = starts.tolist(), ends.tolist()
    for row in range(int(rows[-1])):
        i, i_end, j, j_end = first[row], first[row + 1], first[row + 1], first[row + 2]
        while i < i_end and j < j_end:
            if row_starts[j] <= row_ends[i] and row_starts[i] <= row_ends[j]:
                a, b = root(i), root(j)
                if a != b:
                    parent[max(a, b)] = min(a, b)
            if row_ends[i] < row_ends[j]:
                i += 1
            else:
                j += 1
    roots = np.array([root(i) for i in range(rows.size)])
    _, labels = np.unique(roots, return_inverse=True)
    return labels


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain: the hull's corners, counter-clockwise, no repeats."""
    unique = np.unique(points, axis=0)  # sorted by x, then y
    if len(unique) < 3:
        return unique
    pts = unique.tolist()

    def half(sequence: list[list[float]]) -> list[list[float]]:
        chain: list[list[float]] = []
        for p in sequence:
            while len(chain) >= 2:
                (ox, oy), (ax, ay) = chain[-2], chain[-1]
                if (ax - ox) * (p[1] - oy) - (ay - oy) * (p[0] - ox) > 0:
                    break
                chain.pop()
            chain.append(p)
        return chain

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def min_area_rect(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """The smallest rectangle around ``points``: its corners (top-left, top-right,
    bottom-right, bottom-left as PaddleOCR orders them), its width and height."""
    hull = convex_hull(points)
    if len(hull) < 3:
        low, high = points.min(axis=0), points.max(axis=0)
        box = np.array([low, [high[0], low[1]], high, [low[0], high[1]]])
        return box, float(high[0] - low[0]), float(high[1] - low[1])
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    u = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    v = np.stack([-u[:, 1], u[:, 0]], axis=1)
    along, across = hull @ u.T, hull @ v.T
    areas = np.ptp(along, axis=0) * np.ptp(across, axis=0)
    best = int(np.argmin(areas))
    a0, a1 = along[:, best].min(), along[:, best].max()
    b0, b1 = across[:, best].min(), across[:, best].max()
    ub, vb = u[best], v[best]
    corners = np.array([a * ub + b * vb for a, b in ((a0, b0), (a1, b0), (a1, b1), (a0, b1))])
    return order_corners(corners), float(a1 - a0), float(b1 - b0)


def order_corners(corners: np.ndarray) -> np.ndarray:
    """Top-left, top-right, bottom-right, bottom-left: the two leftmost points ordered by
    y are the left side, the two others the right side."""
    by_x = corners[np.argsort(corners[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]])


def expand(box: np.ndarray, width: float, height: float, ratio: float) -> np.ndarray:
    """DB's unclip: the rectangle grown on every side by area * ratio / perimeter, the
    offset by which the model's shrunk text kernels were made."""
    if width + height == 0:
        return box
    distance = width * height * ratio / (2 * (width + height))
    center = box.mean(axis=0)
    u = (box[1] - box[0]) / max(float(np.linalg.norm(box[1] - box[0])), 1e-9)
    v = (box[3] - box[0]) / max(float(np.linalg.norm(box[3] - box[0])), 1e-9)
    half_w, half_h = width / 2 + distance, height / 2 + distance
    corners = [
        center + sx * half_w * u + sy * half_h * v
        for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
    ]
    return order_corners(np.array(corners))
