import numpy as np
import pytest

from semcomm_ros.scenes import CLASS_NAMES, TABLE_STYLES, TabletopScene, tabletop_clip


def test_class_list():
    assert CLASS_NAMES[0] == "table"
    assert len(CLASS_NAMES) >= 11 and len(set(CLASS_NAMES)) == len(CLASS_NAMES)
    for name in ("cracker_box", "mug", "bowl", "banana", "mustard_bottle", "tomato_soup_can"):
        assert name in CLASS_NAMES


def test_shapes_dtypes_and_ids():
    frames = list(tabletop_clip(1, 5, 160, 96, instances=True))
    assert len(frames) == 5
    for rgb, lab, inst in frames:
        assert rgb.shape == (96, 160, 3) and rgb.dtype == np.uint8
        assert lab.shape == (96, 160) and lab.dtype == np.uint8
        assert inst.shape == (96, 160) and inst.dtype == np.uint8
        assert lab.max() < len(CLASS_NAMES)
        # instance ids and class ids agree: an instance has one class, table has no instance
        assert np.array_equal(lab == 0, inst == 0)
        for k in np.unique(inst[inst > 0]):
            assert len(np.unique(lab[inst == k])) == 1
    two = list(tabletop_clip(1, 2, 64, 64))
    assert len(two[0]) == 2


def test_deterministic_per_seed():
    a = list(tabletop_clip(7, 6, 128, 128))
    b = list(tabletop_clip(7, 6, 128, 128))
    c = list(tabletop_clip(8, 6, 128, 128))
    for (ra, la), (rb, lb) in zip(a, b):
        assert np.array_equal(ra, rb) and np.array_equal(la, lb)
    assert not np.array_equal(a[0][0], c[0][0])


def test_object_counts_and_many_classes():
    counts, seen = [], set()
    for seed in range(40):
        scene = TabletopScene(seed, 20, 64, 64)
        counts.append(len(scene.objs))
        seen.update(o.cls for o in scene.objs)
    assert min(counts) >= 3 and max(counts) <= 8
    assert 4.3 <= np.mean(counts) <= 6.0
    assert len(seen) >= 10


def test_objects_move_appear_and_rotate():
    frames = list(tabletop_clip(3, 40, 256, 256, instances=True))
    first, last = frames[0][2], frames[-1][2]
    common = [k for k in np.unique(first) if k and k in np.unique(last)]
    moved = 0
    for k in common:
        c0 = np.argwhere(first == k).mean(0)
        c1 = np.argwhere(last == k).mean(0)
        moved += np.hypot(*(c1 - c0)) > 2.0
    assert moved >= 1
    # objects are dropped in during the clip, and grow while they fall
    assert len(np.unique(last)) > len(np.unique(first)) or any(
        (first == k).sum() < (frames[10][2] == k).sum() for k in common
    )


def test_falling_objects_grow():
    scene = TabletopScene(0, 30, 256, 256, n_objects=1)
    scene.objs[0].spawn = 2
    areas = []
    for _ in range(10):
        scene.step()
        _, lab = scene.render()
        areas.append(int((lab > 0).sum()))
    assert areas[0] == 0 or areas[0] < areas[-1]
    assert areas[2] < areas[5] <= areas[-1]


def test_bowl_has_a_hole():
    bowl = CLASS_NAMES.index("bowl")
    scene = TabletopScene(5, 10, 256, 256, n_objects=1, classes=["bowl"])
    rgb, lab = scene.render()
    o = scene.objs[0]
    cy, cx = int(round(o.pos[1])), int(round(o.pos[0]))
    assert lab[cy, cx] == 0  # the centre of the ring is table
    assert (lab == bowl).sum() > 200
    import cv2

    n, _ = cv2.connectedComponents((lab == 0).astype(np.uint8))
    assert n - 1 == 2  # background outside and inside the ring


def test_table_styles_and_errors():
    for style in TABLE_STYLES:
        rgb, lab = next(tabletop_clip(2, 1, 64, 64, table=style))
        assert rgb.std() > 1.0
    with pytest.raises(ValueError, match="unknown object class"):
        TabletopScene(0, 1, 64, 64, classes=["spaceship"])
    with pytest.raises(ValueError, match="table style"):
        TabletopScene(0, 1, 64, 64, table="marble")
    with pytest.raises(ValueError, match="frame size"):
        TabletopScene(0, 1, 4, 4)


def test_cli_writes_png(tmp_path):
    from semcomm_ros import cli

    out = tmp_path / "s.png"
    assert cli.main(["scenes", "--seed", "1", "--frames", "4", "--width", "64", "--height", "64", "--every", "2",
                     "--out", str(out)]) == 0
    import cv2

    img = cv2.imread(str(out))
    assert img.shape == (128, 128, 3)


def test_seed_splits_are_disjoint_and_hold_their_users():
    from semcomm_ros.demo import EVAL_SEED0
    from semcomm_ros.scenes import splits
    from semcomm_ros.training.config import PRESETS

    ranges = sorted(splits.SPLITS.values(), key=lambda r: r.start)
    assert all(a.stop <= b.start for a, b in zip(ranges, ranges[1:])), ranges
    assert splits.split_of(EVAL_SEED0) == "demo" and splits.split_of(splits.TABLE_SEED0) == "table"
    assert {splits.split_of(s) for s in splits.TUNING_SEEDS} == {"demo"}
    assert splits.split_of(splits.SEG_HELDOUT_SEED0) == "seg_heldout" and splits.split_of(7) is None
    # every preset's training clips stay inside the synthesizer's split
    for name, preset in PRESETS.items():
        data = preset().data
        assert splits.split_of(data.first_seed) == splits.split_of(data.first_seed + data.clips - 1) \
            == "synth_train", name
