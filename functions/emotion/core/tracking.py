"""Face tracking across video frames: IoU association with a constant-velocity motion model.

Each detection of a processed frame is matched to an existing track when their boxes overlap enough
(IoU against the track's box predicted forward by its velocity) or, for fast motion, when the centres
are close relative to the face size; either way the sizes must be alike (a face does not grow or shrink
abruptly). Matching is greedy, best pair first, one detection per track, and confirmed tracks choose before
tentative ones.
A track that is not matched survives ``max_gap_ms`` of misses (a turned head, a blink of the detector);
after that it is closed. Times are container timestamps, so the same settings work at any sampling rate.

Tracks keep their timeline compactly (numpy rows, not Python objects) so a long video stays cheap;
:mod:`emotion.core.video` turns them into the result models at the end.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4: x, y, w, h) with every box in ``b`` (M, 4) → (N, M)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    ax0, ay0 = a[:, 0:1], a[:, 1:2]
    ax1, ay1 = ax0 + a[:, 2:3], ay0 + a[:, 3:4]
    bx0, by0 = b[:, 0], b[:, 1]
    bx1, by1 = bx0 + b[:, 2], by0 + b[:, 3]
    iw = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None)
    ih = np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    inter = iw * ih
    union = a[:, 2:3] * a[:, 3:4] + b[:, 2] * b[:, 3] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


@dataclass
class Track:
    """One person's face over time."""

    key: int  # internal, unique per tracker
    box: np.ndarray  # last observed (x, y, w, h), float
    first_ms: float
    last_ms: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # box units per ms
    hits: int = 1
    # Per observation: t_ms, frame index, x, y, w, h, detector score, then the class probabilities.
    rows: list[np.ndarray] = field(default_factory=list)
    missed: bool = False  # not matched on the latest processed frame
    id: int = 0  # public id, 1..N in order of confirmation (0 while tentative)
    score_sum: float = 0.0  # sum of detector scores, for the mean

    def predict(self, t_ms: float) -> np.ndarray:
        """The box expected at ``t_ms``: position moved at constant velocity, size kept."""
        dt = max(0.0, t_ms - self.last_ms)
        dt = min(dt, 500.0)  # do not extrapolate far: velocity estimates are noisy
        shift = np.zeros(4)
        shift[:2] = self.velocity[:2] * dt
        return self.box + shift

    @property
    def probabilities(self) -> np.ndarray | None:
        """The latest class probabilities, or None when none were recorded."""
        return self.rows[-1][7:] if self.rows else None


class FaceTracker:
    """Associates per-frame face detections into tracks with stable ids.

    ``update(t_ms, frame_index, faces, probs)`` takes YuNet rows (N, 15) and the classifier's (N, C)
    probabilities of one processed frame, in time order, and returns the public track id of each detection
    (0 while its track is tentative: seen on fewer than ``min_hits`` frames).
    """

    def __init__(self, iou_threshold: float = 0.25, max_gap_ms: float = 1000.0, max_centre_shift: float = 1.0,
                 min_hits: int = 2, min_track_score: float = 0.7):
        self.iou_threshold = iou_threshold
        self.max_gap_ms = max_gap_ms
        self.max_centre_shift = max_centre_shift  # in face widths, for the motion fallback
        self.min_hits = min_hits
        self.min_track_score = min_track_score  # mean detector score a track needs to be reported
        self.active: list[Track] = []
        self.closed: list[Track] = []
        self._next_id = 1
        self._next_key = 1
        self.frames = 0

    def update(self, t_ms: float, frame_index: int, faces: np.ndarray, probs: np.ndarray) -> list[int]:
        self.frames += 1
        # Close tracks that have been missing too long.
        still: list[Track] = []
        for track in self.active:
            (still if t_ms - track.last_ms <= self.max_gap_ms else self.closed).append(track)
        self.active = still

        boxes = faces[:, :4].astype(np.float64) if len(faces) else np.zeros((0, 4))
        score = self._affinity(self.active, t_ms, boxes)
        assigned: list[int] = [-1] * len(boxes)
        used_tracks: set[int] = set()
        # Confirmed tracks choose first, tentative ones take what is left: a fresh false detection next to
        # a face (hair, a hand) must not take that face over from its established track.
        is_confirmed = np.array([bool(t.id) for t in self.active], dtype=bool).reshape(-1, 1)
        for confirmed in (True, False):
            level = np.where(is_confirmed == confirmed, score, 0.0)
            order = np.dstack(np.unravel_index(np.argsort(-level, axis=None), level.shape))[0]
            for ti, di in order:
                if level[ti, di] <= 0:
                    break
                if ti in used_tracks or assigned[di] != -1:
                    continue
                used_tracks.add(int(ti))
                assigned[di] = int(ti)

        matched: list[Track] = []
        for di, ti in enumerate(assigned):
            row = np.concatenate(([t_ms, frame_index], boxes[di], [faces[di, 14]], probs[di])).astype(np.float32)
            if ti >= 0:
                track = self.active[ti]
                dt = t_ms - track.last_ms
                if dt > 0:
                    measured = (boxes[di] - track.box) / dt
                    track.velocity = 0.7 * track.velocity + 0.3 * measured if track.hits > 1 else 0.5 * measured
                track.box = boxes[di]
                track.last_ms = t_ms
                track.hits += 1
                track.missed = False
                track.rows.append(row)
                track.score_sum += float(faces[di, 14])
            else:
                track = Track(key=self._next_key, box=boxes[di], first_ms=t_ms, last_ms=t_ms, rows=[row],
                              score_sum=float(faces[di, 14]))
                self._next_key += 1
                self.active.append(track)
            if not track.id and track.hits >= self.min_hits and self._score(track) >= self.min_track_score:
                self._confirm(track)
            matched.append(track)
        seen = {t.key for t in matched}
        for track in self.active:
            track.missed = track.key not in seen
        return [t.id for t in matched]

    @staticmethod
    def _score(track: Track) -> float:
        return track.score_sum / max(1, track.hits)

    def cut(self) -> None:
        """A shot change: every active track ends here (a box in the next shot is someone else)."""
        self.closed.extend(self.active)
        self.active = []

    def _confirm(self, track: Track) -> None:
        track.id = self._next_id
        self._next_id += 1

    def _affinity(self, tracks: list[Track], t_ms: float, boxes: np.ndarray) -> np.ndarray:
        """Pair scores > 0 for admissible (track, detection) pairs: IoU (+1), else a smaller motion score.

        Each track is compared at its last box and at its motion-predicted box, whichever fits better:
        walking heads bob, so the velocity alone is a noisy guide.
        """
        if not tracks or len(boxes) == 0:
            return np.zeros((len(tracks), len(boxes)))
        scores = []
        for reference in (np.array([t.box for t in tracks]), np.array([t.predict(t_ms) for t in tracks])):
            iou = iou_matrix(reference, boxes)
            size = np.maximum(reference[:, 2:3], 1.0)
            rc = reference[:, :2] + reference[:, 2:] / 2
            dc = boxes[:, :2] + boxes[:, 2:] / 2
            shift = np.linalg.norm(rc[:, None, :] - dc[None, :, :], axis=2) / size
            ratio = boxes[None, :, 2] / size
            # A face does not change size abruptly; without this a small face's box inside a bigger one that
            # is now in front of it (IoU = area ratio) took over the bigger face's track.
            similar_size = (ratio > 0.6) & (ratio < 1.6)
            near = (shift < self.max_centre_shift) & similar_size
            motion = np.where(near, 0.5 * (1 - shift / self.max_centre_shift), 0.0)
            scores.append(np.where((iou >= self.iou_threshold) & similar_size, iou + 1.0, motion))
        return np.maximum(scores[0], scores[1])

    def visible(self) -> list[Track]:
        """Confirmed tracks matched on the latest processed frame (what an annotated frame shows)."""
        return [t for t in self.active if not t.missed and t.id]

    def finish(self) -> list[Track]:
        """The confirmed tracks by id. Tracks seen on fewer than ``min_hits`` frames (single-frame false
        detections; the rule is relaxed when the video had fewer processed frames) or with a mean detector
        score under ``min_track_score`` (persistent look-alikes: emblems, posters) are dropped."""
        tracks = self.closed + self.active
        self.closed, self.active = [], []
        need = min(self.min_hits, self.frames)
        kept = sorted((t for t in tracks if t.id or (t.hits >= need and self._score(t) >= self.min_track_score)),
                      key=lambda t: (t.first_ms, t.key))
        for track in kept:  # short videos: tracks confirmed only now get the next ids
            if not track.id:
                self._confirm(track)
        kept.sort(key=lambda t: t.id)
        return kept
