"""Model resolution -> camera resolution: label-guided upsampling and the data-consistency step."""

import numpy as np
import pytest

from semcomm_ros.synth.upsample import to_camera


def _scene(size=128, factor=4):
    """A red square (class 3) on a grey table (class 0), square edges off the model's pixel grid."""
    labels = np.zeros((size, size), np.uint8)
    labels[37:91, 45:99] = 3
    full = np.full((size, size, 3), 120, np.uint8)
    full[labels == 3] = (220, 30, 30)
    import cv2

    small = cv2.resize(full, (size // factor, size // factor), interpolation=cv2.INTER_AREA)
    return labels, full, small


def test_guided_edges_follow_the_label_map():
    labels, full, small = _scene()
    guided = to_camera(small, labels).astype(int)
    plain = to_camera(small, labels, guided=False).astype(int)
    err_guided = np.abs(guided - full).mean()
    err_plain = np.abs(plain - full).mean()
    assert err_guided < 0.25 * err_plain
    # one pixel on either side of the left edge: the full colour step, not a ramp
    row = 60
    assert abs(guided[row, 44, 0] - 120) <= 15 and abs(guided[row, 45, 0] - 220) <= 15
    assert abs(plain[row, 45, 0] - 220) > 30  # plain upsampling ramps over the edge


def test_consistency_pulls_the_low_band_to_the_received_frame():
    import cv2

    labels, full, small = _scene()
    wrong = np.clip(small.astype(int) + 40, 0, 255).astype(np.uint8)  # a synthesizer with a colour cast
    lowres = cv2.resize(full, (64, 64), interpolation=cv2.INTER_AREA)  # what the low-res stream delivered
    off = to_camera(wrong, labels)
    on = to_camera(wrong, labels, lowres=lowres, consistency=1.0)
    assert np.abs(on.astype(int) - full).mean() < 0.3 * np.abs(off.astype(int) - full).mean()


def test_shape_and_value_errors():
    labels, _, small = _scene()
    with pytest.raises(ValueError, match="HxWx3"):
        to_camera(small[..., 0], labels)
    with pytest.raises(ValueError, match="at least the frame's size"):
        to_camera(small, labels[:16, :16])
    with pytest.raises(ValueError, match="needs the received low-res frame"):
        to_camera(small, labels, consistency=0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_camera(small, labels, lowres=small, consistency=2.0)


def test_consistency_per_class_leaves_objects_to_the_synthesizer():
    import cv2

    labels, full, small = _scene()
    wrong = np.clip(small.astype(int) + 40, 0, 255).astype(np.uint8)
    lowres = cv2.resize(full, (64, 64), interpolation=cv2.INTER_AREA)
    off = to_camera(wrong, labels).astype(int)
    table_only = to_camera(wrong, labels, lowres=lowres, consistency=1.0, consistency_objects=0.0).astype(int)
    obj, table = labels == 3, labels == 0
    assert np.array_equal(table_only[obj], off[obj])  # the objects keep the synthesizer's colours
    assert np.abs(table_only[table] - full[table]).mean() < 0.3 * np.abs(off[table] - full[table]).mean()
