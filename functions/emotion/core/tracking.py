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

With an :class:`Appearance` (the SFace embedder and its gate, :mod:`emotion.core.identity`), each track also
keeps its few best identifiable faces and embeds them when it closes (then drops the pixels, so memory does
not grow with the video), and appearance vetoes a contested association (a detection that could go to two
tracks, or a track with two candidate detections) whose face does not look like the track's: that is where
two crossing people would swap ids. :func:`link_tracks` then groups the closed tracks into persons.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import cv2
import numpy as np

from emotion.core.align import square_crop
from emotion.core.identity import FaceGate, identifiable, normalise

Embed = Callable[[np.ndarray], np.ndarray]  # (N, 112, 112, 3) RGB uint8 -> (N, 128) unit vectors
Submit = Callable[..., Future]  # ThreadPoolExecutor.submit


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
    # Identity: the best identifiable faces as [quality, aligned RGB or None once embedded, embedding or None].
    gallery: list[list] = field(default_factory=list)
    embedding: np.ndarray | None = None  # unit mean of the gallery's embeddings, set when the track closes
    identifiable: bool = False  # some face of it passed the gate (even when it needed no embedding, see finish)
    embedding_job: Future | None = None  # the closing embedding, when it runs on a worker
    face: tuple[tuple[float, float], np.ndarray | bytes] | None = None  # (rank, crop; JPEG once closed)
    # When it last had an identifiable face (or passed an identity check). After a while without one (missed,
    # or matched to faces too poor to identify) the next face it is matched to is checked first: an occlusion
    # is where people swap tracks.
    good_ms: float = 0.0

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

    @property
    def identified(self) -> bool:
        """Its faces were good enough to identify it (if none were, it is never linked to anyone)."""
        return self.identifiable or self.embedding is not None or self.embedding_job is not None


@dataclass
class Appearance:
    """What the tracker needs to use identity: an embedding function and which faces to embed."""

    embed: Embed
    # Runs a closed track's embedding on a worker (the video's frame pool), so the thread that reads and tracks
    # frames is not held up: it is on the critical path. None: embed in place.
    submit: Submit | None = None
    gate: FaceGate = field(default_factory=FaceGate)
    per_track: int = 3  # faces embedded per track (the best ones by :meth:`FaceGate.geometry`)
    # An association at risk (see FaceTracker._veto) is vetoed below this cosine. Different people scored at
    # most 0.45 per face on the dev clips, the same person down to 0.04: a low bar vetoes clear swaps and seldom
    # splits a person (a split is linked again by identity; a swap mixes two people's emotions).
    veto_below: float = 0.15
    # A track this long without an identifiable face is checked again: at 5 fps two samples, at 25 fps nine
    # frames; every frame checked cost 4x the embeddings on the Hamilton clip for no other change.
    unsure_after_ms: float = 350.0
    face_size: int = 96  # px of the representative face crop

    def reference(self, track: Track, full: bool = True) -> np.ndarray | None:
        """The track's mean embedding (its gallery embedded on demand), or None without a face. ``full``
        False (a check during tracking): embed no more than its best face when none is embedded yet."""
        todo = [entry for entry in track.gallery if entry[2] is None]
        if not full and len(todo) < len(track.gallery):
            todo = []  # some are embedded already: enough for a check
        elif not full and todo:
            todo = [max(todo, key=lambda entry: entry[0])]
        if todo:
            for entry, vector in zip(todo, self.embed(np.stack([entry[1] for entry in todo])), strict=True):
                entry[1], entry[2] = None, vector
        done = [entry[2] for entry in track.gallery if entry[2] is not None]
        return normalise(np.mean(done, axis=0)) if done else None

    def offer(self, track: Track, frame: np.ndarray, face: np.ndarray,
              ready: tuple[float, np.ndarray | None, np.ndarray | None] | None = None) -> None:
        """Keep this detection in the track's gallery if it is among its best identifiable faces, and as its
        representative face if it is the best seen so far."""
        quality = self.gate.geometry(face)
        rank = (quality, float(face[14]) * min(1.0, float(face[2]) / 100.0))
        if track.face is None or rank > track.face[0]:
            track.face = (rank, face_crop(frame, face[:4], self.face_size))
        if quality <= 0:
            return
        worst = min(track.gallery, key=lambda entry: entry[0]) if len(track.gallery) >= self.per_track else None
        if worst is not None and quality <= worst[0]:
            return
        if ready is not None:
            quality, crop, vector = ready
        else:
            quality, crop = identifiable(self.gate, frame, face)
            vector = None
        if crop is None and vector is None:
            return
        if worst is not None:
            track.gallery.remove(worst)
        track.gallery.append([quality, crop, vector])
        track.identifiable = True

    def close(self, track: Track, embed: bool = True) -> None:
        """Embed what is left of the gallery (unless ``embed`` is False: nothing it could be linked to), keep
        only the mean, and encode the face: no pixels stay. Tentative tracks are left as they are (they are
        dropped, or confirmed and closed by ``finish``)."""
        if track.id and track.embedding is None and track.gallery:
            if embed:
                crops = [entry[1] for entry in track.gallery if entry[2] is None]
                done = [entry[2] for entry in track.gallery if entry[2] is not None]
                if self.submit is not None and crops:
                    track.embedding_job = self.submit(self._mean, crops, done)
                else:
                    track.embedding = self._mean(crops, done)
            track.gallery = []
        if track.face is not None and not isinstance(track.face[1], bytes):
            ok, jpeg = cv2.imencode(".jpg", track.face[1], [cv2.IMWRITE_JPEG_QUALITY, 85])
            track.face = (track.face[0], jpeg.tobytes()) if ok else None


    def _mean(self, crops: list[np.ndarray], done: list[np.ndarray]) -> np.ndarray:
        vectors = done + (list(self.embed(np.stack(crops))) if crops else [])
        return normalise(np.mean(vectors, axis=0))

    @staticmethod
    def resolve(track: Track) -> None:
        """Wait for the track's embedding if it runs on a worker."""
        if track.embedding_job is not None:
            track.embedding, track.embedding_job = track.embedding_job.result(), None


def face_crop(frame: np.ndarray, box: np.ndarray, size: int) -> np.ndarray:
    """A square around the face box (1.3x its larger side), resized to ``size``: the person's picture."""
    crop = square_crop(frame, box, scale=1.3)
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


class FaceTracker:
    """Associates per-frame face detections into tracks with stable ids.

    ``update(t_ms, frame_index, faces, probs)`` takes YuNet rows (N, 15) and the classifier's (N, C)
    probabilities of one processed frame, in time order, and returns the public track id of each detection
    (0 while its track is tentative: seen on fewer than ``min_hits`` frames).
    """

    def __init__(self, iou_threshold: float = 0.25, max_gap_ms: float = 1000.0, max_centre_shift: float = 1.25,
                 min_hits: int = 2, min_track_score: float = 0.7, appearance: Appearance | None = None,
                 min_track_ms: float = 300.0, motion_ms: float = 200.0, new_track_shift: float = 1.5):
        self.appearance = appearance
        self.vetoes = 0  # associations refused because the faces did not match
        self.iou_threshold = iou_threshold
        self.max_gap_ms = max_gap_ms
        self.max_centre_shift = max_centre_shift  # in face widths, for the motion fallback
        self.min_hits = min_hits
        self.min_track_score = min_track_score  # mean detector score a track needs to be reported
        # A track seen for a shorter time is not reported (unless the video is shorter): a time, not a count of
        # frames, so that every frame and 5 fps keep the same faces (``min_hits`` alone lets 2 frames 40 ms
        # apart at 25 fps through: a passing profile or a hand got its own person).
        self.min_track_ms = min_track_ms
        # A match may move the face's centre ``max_centre_shift`` face widths (from its last or its predicted box)
        # for a track last seen ``motion_ms`` ago or more, proportionally less for a shorter time (0.4 widths at
        # least): at 25 fps a face does not jump half its width from one frame to the next; such a match was the
        # neighbour that took the place of a face hidden for a frame (fp_video at every frame). A tentative track
        # may move ``new_track_shift`` widths: it has no velocity yet to predict with, and at 5 fps a passer-by
        # crossing the frame moves more than a width between samples (a confirmed track's prediction follows).
        self.motion_ms = motion_ms
        self.new_track_shift = new_track_shift
        self._span = [float("inf"), float("-inf")]  # first and last processed time
        self.active: list[Track] = []
        self.closed: list[Track] = []
        self._next_id = 1
        self._next_key = 1
        self.frames = 0

    def update(self, t_ms: float, frame_index: int, faces: np.ndarray, probs: np.ndarray,
               frame: np.ndarray | None = None) -> list[int]:
        """``frame``: the BGR pixels, needed for identity (without them appearance is not used)."""
        self.frames += 1
        self._span = [min(self._span[0], t_ms), max(self._span[1], t_ms)]
        # Close tracks that have been missing too long.
        still: list[Track] = []
        for track in self.active:
            if t_ms - track.last_ms <= self.max_gap_ms:
                still.append(track)
            else:
                self._close(track)
        self.active = still

        boxes = faces[:, :4].astype(np.float64) if len(faces) else np.zeros((0, 4))
        score = self._affinity(self.active, t_ms, boxes)
        ready: dict[int, tuple[float, np.ndarray | None, np.ndarray | None]] = {}
        if self.appearance is not None and frame is not None:
            ready = self._veto(t_ms, score, faces, frame)
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
            if ti >= 0 and self.appearance is not None:
                track = self.active[ti]
                # An unsure track becomes sure again only by a check, not by a face that could not be checked.
                unsure = t_ms - track.good_ms >= self.appearance.unsure_after_ms
                if di in ready or (not unsure and self.appearance.gate.geometry(faces[di]) > 0):
                    track.good_ms = t_ms
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
                track = Track(key=self._next_key, box=boxes[di], first_ms=t_ms, last_ms=t_ms, good_ms=t_ms, rows=[row],
                              score_sum=float(faces[di, 14]))
                self._next_key += 1
                self.active.append(track)
            if self.appearance is not None and frame is not None:
                self.appearance.offer(track, frame, faces[di], ready.get(di))
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
        """A shot change: every active track ends here (a box in the next shot is someone else until
        identity says otherwise)."""
        for track in self.active:
            self._close(track)
        self.active = []

    def _close(self, track: Track) -> None:
        if not track.id and self.frames >= self.min_hits:
            return  # it can no longer be confirmed (see finish): drop it now rather than hold it to the end
        self.closed.append(track)
        if self.appearance is not None:
            self.appearance.close(track)

    def _veto(self, t_ms: float, score: np.ndarray, faces: np.ndarray,
              frame: np.ndarray) -> dict[int, tuple[float, np.ndarray | None, np.ndarray | None]]:
        """Refuse (in place) pairs whose faces disagree. Only pairs at risk are checked, which keeps identity
        cheap: contested ones (a detection two tracks could take, a track two detections could extend) and
        those of a track that has had no identifiable face for a while (see :attr:`Track.good_ms`); most
        associations are neither.
        Returns the detections embedded here (quality, None, embedding), for the galleries."""
        assert self.appearance is not None
        positive = score > 0
        # Contested: two candidates of the same kind (both overlap, or both only near by motion). An overlap
        # beside a mere neighbour is not at risk (the overlap wins), and checking those cost most embeddings.
        kind = np.where(positive, np.floor(score), -1.0)  # 1 = IoU pair, 0 = motion pair
        rows = positive & (kind == kind.max(axis=1, keepdims=True)) if kind.size else positive
        cols = positive & (kind == kind.max(axis=0, keepdims=True)) if kind.size else positive
        unsure = np.array([t_ms - t.good_ms >= self.appearance.unsure_after_ms for t in self.active],
                          dtype=bool).reshape(-1, 1)
        # Tentative tracks choose after confirmed ones, so only confirmed ones compete for a detection.
        confirmed = np.array([bool(t.id) for t in self.active], dtype=bool).reshape(-1, 1)
        cols = cols & confirmed
        contested = positive & ((rows & (rows.sum(axis=1, keepdims=True) > 1))
                                | (cols & (cols.sum(axis=0, keepdims=True) > 1)) | unsure)
        ready: dict[int, tuple[float, np.ndarray | None, np.ndarray | None]] = {}
        if not contested.any():
            return ready
        references = {int(ti): self.appearance.reference(self.active[ti], full=False)
                      for ti in np.flatnonzero(contested.any(axis=1)) if self.active[ti].id}
        references = {ti: ref for ti, ref in references.items() if ref is not None}
        if not references:
            return ready
        crops: dict[int, tuple[float, np.ndarray]] = {}
        for column in np.flatnonzero(contested.any(axis=0)):
            quality, crop = identifiable(self.appearance.gate, frame, faces[column])
            if crop is not None:
                crops[int(column)] = (quality, crop)
        if not crops:
            return ready
        vectors = self.appearance.embed(np.stack([crop for _, crop in crops.values()]))
        for (di, (quality, _)), vector in zip(crops.items(), vectors, strict=True):
            ready[di] = (quality, None, vector)
            for ti, reference in references.items():
                if contested[ti, di] and float(reference @ vector) < self.appearance.veto_below:
                    score[ti, di] = 0.0
                    self.vetoes += 1
        return ready

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
        elapsed = np.array([max(0.0, t_ms - t.last_ms) for t in tracks]).reshape(-1, 1)
        widest = np.array([self.max_centre_shift if t.id else self.new_track_shift for t in tracks]).reshape(-1, 1)
        max_shift = np.clip(widest * elapsed / self.motion_ms, 0.4, widest)
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
            near = (shift < max_shift) & similar_size
            motion = np.where(near, 0.5 * (1 - shift / np.maximum(max_shift, 1e-9)), 0.0)
            scores.append(np.where((iou >= self.iou_threshold) & near, iou + 1.0, motion))
        return np.maximum(scores[0], scores[1])

    def visible(self) -> list[Track]:
        """Confirmed tracks matched on the latest processed frame (what an annotated frame shows)."""
        return [t for t in self.active if not t.missed and t.id]

    def finish(self) -> list[Track]:
        """The confirmed tracks, with ids 1..N by confirmation. Tracks seen on fewer than ``min_hits`` frames
        (single-frame false detections) or for less than ``min_track_ms`` (both relaxed when the video had fewer
        processed frames or was shorter), or with a mean detector score under ``min_track_score`` (persistent
        look-alikes: emblems, posters) are dropped."""
        tracks = self.closed + self.active
        self.closed, self.active = [], []
        need = min(self.min_hits, self.frames)
        need_ms = min(self.min_track_ms, max(0.0, self._span[1] - self._span[0]))
        # A track cut short by the video's end (it may go on after it) needs only its hits.
        kept = sorted((t for t in tracks if (t.id or t.hits >= need) and self._score(t) >= self.min_track_score
                       and (t.last_ms - t.first_ms >= need_ms or t.last_ms >= self._span[1])),
                      key=lambda t: (t.id or float("inf"), t.first_ms, t.key))
        self._next_id = 1
        for track in kept:  # ids without gaps; short videos: tracks confirmed only now get the next ids
            self._confirm(track)
        if self.appearance is not None:
            # Tracks still open at the end are embedded only if some other identifiable track never overlaps
            # them in time: a person is one face at a time, so nothing else could be linked to them (on the
            # 4 s fp_video clip this skips 3 of 7 tracks' embeddings).
            for track in kept:
                partner = any(other is not track and other.identified and not _overlap(
                    [(other.first_ms, other.last_ms)], [(track.first_ms, track.last_ms)]) for other in kept)
                self.appearance.close(track, embed=partner)
            for track in kept:
                self.appearance.resolve(track)
        kept.sort(key=lambda t: t.id)
        return kept


def link_tracks(tracks: list[Track], threshold: float) -> list[list[Track]]:
    """Group tracks into persons: repeatedly join the two groups whose tracks agree best (mean pairwise
    cosine of their mean embeddings) while that is at least ``threshold`` and no two of their tracks overlap
    in time (one person is one face at a time). Tracks without an embedding stay alone. Groups come out in
    order of first appearance."""
    groups: list[list[Track]] = [[t] for t in tracks]
    embedded = [i for i, t in enumerate(tracks) if t.embedding is not None]
    if len(embedded) > 1:
        vectors = np.stack([tracks[i].embedding for i in embedded])  # type: ignore[misc]
        members: list[list[int]] = [[k] for k in range(len(embedded))]
        spans = [[(tracks[i].first_ms, tracks[i].last_ms)] for i in embedded]
        sim = vectors @ vectors.T
        total = sim.copy()  # sum of pairwise cosines between groups
        np.fill_diagonal(total, -np.inf)
        alive = np.ones(len(embedded), dtype=bool)
        while True:
            sizes = np.array([len(m) for m in members], dtype=float)
            mean = total / np.outer(sizes, sizes)
            mean[~alive, :] = -np.inf
            mean[:, ~alive] = -np.inf
            np.fill_diagonal(mean, -np.inf)
            a, b = np.unravel_index(int(np.argmax(mean)), mean.shape)
            if mean[a, b] < threshold:
                break
            if _overlap(spans[a], spans[b]):
                total[a, b] = total[b, a] = -np.inf  # cannot link, ever: groups only grow
                continue
            members[a] += members[b]
            spans[a] += spans[b]
            total[a, :] += total[b, :]
            total[:, a] += total[:, b]
            total[a, a] = -np.inf
            alive[b] = False
        groups = [[tracks[embedded[k]] for k in members[g]] for g in np.flatnonzero(alive)]
        groups += [[t] for t in tracks if t.embedding is None]
    for group in groups:
        group.sort(key=lambda t: t.first_ms)
    groups.sort(key=lambda g: (g[0].first_ms, g[0].id))
    return groups


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    return any(s0 <= e1 and s1 <= e0 for s0, e0 in a for s1, e1 in b)
