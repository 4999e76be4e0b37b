"""FaceTracker: ids stable across frames, short misses survived, long gaps and cuts end tracks."""

from __future__ import annotations

import numpy as np

from emotion.core.tracking import FaceTracker, iou_matrix

LABELS = 3


def rows(*boxes: tuple[float, float, float, float], score: float = 0.9) -> np.ndarray:
    out = np.zeros((len(boxes), 15), dtype=np.float32)
    for i, box in enumerate(boxes):
        out[i, :4] = box
        out[i, 14] = score
    return out


def probs(n: int) -> np.ndarray:
    return np.full((n, LABELS), 1.0 / LABELS)


def test_iou_matrix() -> None:
    a = np.array([[0, 0, 10, 10]], dtype=float)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [20, 20, 5, 5]], dtype=float)
    assert np.allclose(iou_matrix(a, b), [[1.0, 50 / 150, 0.0]])
    assert iou_matrix(np.zeros((0, 4)), b).shape == (0, 3)


def test_two_moving_faces_keep_their_ids() -> None:
    tracker = FaceTracker()
    seen = []
    for step in range(10):
        t = step * 200.0
        faces = rows((100 + 8 * step, 100, 60, 60), (400 - 8 * step, 120, 50, 50))
        seen.append(tracker.update(t, step, faces, probs(2)))
    assert seen[0] == [0, 0]  # tentative until seen twice
    assert all(ids == [1, 2] for ids in seen[1:])
    tracks = tracker.finish()
    assert [t.id for t in tracks] == [1, 2]
    assert all(t.hits == 10 for t in tracks)
    times = [float(r[0]) for r in tracks[0].rows]
    assert times == sorted(times)


def test_short_miss_survives_long_gap_ends() -> None:
    tracker = FaceTracker(max_gap_ms=1000)
    box = (100, 100, 60, 60)
    tracker.update(0, 0, rows(box), probs(1))
    tracker.update(200, 1, rows(box), probs(1))
    tracker.update(400, 2, rows(), probs(0))  # missed
    assert tracker.visible() == []
    assert tracker.update(800, 3, rows(box), probs(1)) == [1]  # back within the gap: same id
    assert tracker.update(2500, 4, rows(box), probs(1)) == [0]  # after the gap: a new track
    tracker.update(2700, 5, rows(box), probs(1))
    assert [t.id for t in tracker.finish()] == [1, 2]


def test_fast_motion_is_followed_and_crossing_faces_do_not_merge() -> None:
    tracker = FaceTracker()
    # A face that jumps 40% of its width per frame (no IoU overlap with the raw previous box at times).
    for step in range(6):
        tracker.update(step * 200.0, step, rows((100 + 45 * step, 200, 80, 80)), probs(1))
    assert len(tracker.finish()) == 1


def test_single_frame_and_low_score_detections_are_dropped() -> None:
    tracker = FaceTracker(min_hits=2, min_track_score=0.7)
    for step in range(5):
        faces = np.concatenate([rows((100, 100, 60, 60)), rows((500, 50, 20, 20), score=0.62)])
        if step == 2:
            faces = np.concatenate([faces, rows((300, 300, 40, 40))])  # a one-frame false positive
        tracker.update(step * 200.0, step, faces, probs(len(faces)))
    tracks = tracker.finish()
    assert len(tracks) == 1 and tracks[0].hits == 5


def test_cut_ends_every_track() -> None:
    tracker = FaceTracker()
    box = (100, 100, 60, 60)
    tracker.update(0, 0, rows(box), probs(1))
    tracker.update(400, 1, rows(box), probs(1))
    tracker.cut()
    tracker.update(600, 2, rows(box), probs(1))
    tracker.update(1000, 3, rows(box), probs(1))
    assert [t.id for t in tracker.finish()] == [1, 2]


def test_tracks_need_time_not_only_frames() -> None:
    """At 25 fps two hits are 40 ms: a face seen for less than min_track_ms is dropped, unless the video ends
    while it is on screen (it may go on after the end)."""
    tracker = FaceTracker(min_hits=2, min_track_ms=300)
    for step in range(30):  # 1.2 s at 25 fps
        faces = rows((100, 100, 60, 60))
        if 5 <= step < 10:  # 160 ms
            faces = np.concatenate([faces, rows((400, 100, 60, 60))])
        if step >= 27:  # the last 80 ms
            faces = np.concatenate([faces, rows((700, 100, 60, 60))])
        tracker.update(step * 40.0, step, faces, probs(len(faces)))
    tracks = tracker.finish()
    assert [(t.id, t.box[0]) for t in tracks] == [(1, 100), (2, 700)]


def test_a_face_does_not_jump_between_close_frames() -> None:
    """Half a face width in 40 ms is somebody else (the neighbour of a face hidden for a frame); the same shift
    after 200 ms is a face that moved."""
    for dt, same in ((40.0, False), (200.0, True)):
        tracker = FaceTracker(min_hits=1, min_track_ms=0)
        tracker.update(0, 0, rows((100, 100, 60, 60)), probs(1))
        tracker.update(dt, 1, rows((100, 135, 60, 60)), probs(1))  # IoU 0.26, centre 0.58 widths down
        assert len(tracker.finish()) == (1 if same else 2), dt


def test_one_processed_frame_still_reports_its_faces() -> None:
    tracker = FaceTracker(min_hits=2)
    tracker.update(0, 0, rows((10, 10, 30, 30), (100, 10, 30, 30)), probs(2))
    assert [t.id for t in tracker.finish()] == [1, 2]


def test_a_small_face_does_not_take_over_the_big_face_in_front_of_it() -> None:
    # fp_video.mp4: a boy walks in front of a woman; her small box lies inside his. By IoU alone (area ratio
    # 0.3) her track took his face over; a face does not grow 1.8x in 0.2 s.
    tracker = FaceTracker()
    small, big = (924, 700, 44, 60), (944, 714, 82, 105)
    tracker.update(0, 0, rows(small, big), probs(2))
    tracker.update(200, 1, rows(small, big), probs(2))
    tracker.update(400, 2, rows(big), probs(1))  # she is hidden behind him
    assert tracker.update(600, 3, rows((919, 672, 79, 106)), probs(1)) == [2]  # his face, moved: still his


def test_established_tracks_choose_before_new_ones() -> None:
    # A low-score detection on the hair above a face starts a tentative track; when the face moves, the
    # face's confirmed track must keep it even though the tentative box overlaps the new position more.
    tracker = FaceTracker(min_track_score=0.7)
    face = (684, 598, 72, 93)
    tracker.update(0, 0, rows(face), probs(1))
    tracker.update(200, 1, rows(face), probs(1))
    hair = rows((667, 553, 54, 74), score=0.64)
    tracker.update(400, 2, np.concatenate([rows(face), hair]), probs(2))
    tracker.update(600, 3, np.concatenate([rows(face), hair]), probs(2))
    ids = tracker.update(800, 4, rows((646, 581, 73, 92)), probs(1))
    assert ids == [1]
    assert [t.id for t in tracker.finish()] == [1]  # the hair track (mean score 0.64) is dropped
