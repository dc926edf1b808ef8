"""Pictures that read right: tile titles that show p_fake against the threshold, bench labels that do not overlap."""

from __future__ import annotations

import itertools

import pytest

from edgedetect.plots import place_labels, tile_title


def test_tile_title_shows_p_fake_and_the_threshold_it_was_compared_with():
    # p_fake 0.463 >= threshold 0.434 is FAKE; "46.3%" beside FAKE read as "mostly real, yet FAKE".
    assert tile_title("FAKE", 0.4627, 0.433831) == "FAKE · p_fake 0.463 ≥ 0.434"
    assert tile_title("REAL", 0.0039, 0.433831) == "REAL · p_fake 0.004 < 0.434"
    assert tile_title("REAL", 0.2) == "REAL · p_fake 0.200"


def _box(anchor, size, offset):
    cx, cy = anchor[0] + offset[0], anchor[1] + offset[1]
    return cx - size[0] / 2, cy - size[1] / 2, cx + size[0] / 2, cy + size[1] / 2


def _overlap(a, b) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def test_labels_of_points_on_top_of_each_other_are_placed_apart_inside_the_axes():
    # The pair's fp16 and fp32 sit 1 px apart, with a third model close by and a legend in the corner.
    anchors = [(400.0, 300.0), (401.0, 300.0), (420.0, 290.0), (100.0, 100.0)]
    sizes = [(130.0, 26.0)] * 4
    radii = [12.0, 15.0, 10.0, 20.0]
    bounds = (0.0, 0.0, 800.0, 500.0)
    legend = (600.0, 0.0, 800.0, 120.0)
    offsets = place_labels(anchors, sizes, radii, bounds, [legend])
    boxes = [_box(a, s, o) for a, s, o in zip(anchors, sizes, offsets)]
    for a, b in itertools.combinations(boxes, 2):
        assert _overlap(a, b) == 0, (a, b)
    for box in boxes:
        assert _overlap(box, bounds) == pytest.approx(130.0 * 26.0)  # wholly inside
        assert _overlap(box, legend) == 0
