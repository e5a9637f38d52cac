"""BlazeFace short-range's input and output conventions, in numpy: what MediaPipe's face detection graph
does around the model file, so that `detect.BlazeFaceLiteRT` can run that file on LiteRT directly.

1. letterbox the RGB frame into the 128×128 input, values scaled to [-1, 1];
2. decode 896 SSD anchors: 512 on the 16×16 grid (stride 8, 2 per cell), 384 on the 8×8 grid (strides
   16, 6 per cell), unit-size anchors; box centre = anchor centre + regressor / 128, size = regressor / 128;
3. score = sigmoid(logit), kept from `score_threshold` on;
4. weighted non-maximum suppression at IoU 0.3: each kept box is the score-weighted mean of the boxes it
   suppresses, with the best one's score.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

INPUT_SIZE = 128
ANCHOR_GRIDS = ((16, 2), (8, 6))  # (cells per side, anchors per cell)
NMS_IOU = 0.3


def anchor_centres() -> np.ndarray:
    """(896, 2) anchor centres (x, y) in [0, 1], in the model's output order."""
    centres = []
    for cells, per_cell in ANCHOR_GRIDS:
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        xs, ys = np.meshgrid(grid, grid)
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], axis=1), per_cell, axis=0))
    return np.concatenate(centres)


def decode(regressors: np.ndarray, logits: np.ndarray, anchors: np.ndarray,
           threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 4) as x0, y0, x1, y1 in input pixels, and their scores, for the anchors scoring ≥ threshold."""
    cutoff = math.log(threshold / (1 - threshold)) if 0 < threshold < 1 else (-math.inf if threshold <= 0 else math.inf)
    keep = np.nonzero(logits >= cutoff)[0]
    scores = 1.0 / (1.0 + np.exp(-logits[keep].astype(np.float64)))
    centre = anchors[keep] * INPUT_SIZE + regressors[keep, :2]
    half = regressors[keep, 2:4] / 2
    return np.concatenate([centre - half, centre + half], axis=1), scores


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou: float = NMS_IOU) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted suppression: (box, score) per group of boxes overlapping the best by more than `iou`."""
    order, kept = np.argsort(-scores), []
    areas = np.prod(np.maximum(boxes[:, 2:] - boxes[:, :2], 0), axis=1)
    while order.size:
        top, rest = boxes[order[0]], boxes[order]
        size = np.maximum(np.minimum(top[2:], rest[:, 2:]) - np.maximum(top[:2], rest[:, :2]), 0)
        inter = size[:, 0] * size[:, 1]
        overlap = inter / np.maximum(areas[order[0]] + areas[order] - inter, 1e-9)
        group = order[overlap > iou]
        weights = scores[group]
        kept.append(((boxes[group] * weights[:, None]).sum(axis=0) / weights.sum(), float(scores[order[0]])))
        order = order[overlap <= iou]
    return kept


def letterbox(bgr: np.ndarray, tensor: np.ndarray) -> tuple[float, int, int]:
    """Write `bgr` into `tensor` (1, 128, 128, 3) as RGB in [-1, 1], centred, black (-1) borders.

    Bilinear sampling and black borders matched MediaPipe best on the test photos and the hamilton clip
    (INTER_AREA lost a photo face; zero borders added a false one).

    Returns the scale and the left and top padding, to map boxes back: x = (input x - pad_x) / scale.
    """
    height, width = bgr.shape[:2]
    scale = INPUT_SIZE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = cv2.resize(bgr, size, interpolation=cv2.INTER_LINEAR)  # bilinear, as MediaPipe samples
    pad_x, pad_y = (INPUT_SIZE - size[0]) // 2, (INPUT_SIZE - size[1]) // 2
    tensor.fill(-1.0)
    view = tensor[0, pad_y:pad_y + size[1], pad_x:pad_x + size[0]]
    np.multiply(cv2.cvtColor(resized, cv2.COLOR_BGR2RGB), np.float32(2 / 255), out=view, casting="unsafe")
    view -= 1.0
    return scale, pad_x, pad_y
