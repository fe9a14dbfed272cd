"""tools/analysis/det_disalign_experiment.py: evaluating the top k of the
uncapped detections equals testing with ``max_per_img=k`` (the tool's
premise), the candidate count by hand, and the missing-run error."""
import importlib.util
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    path = osp.join(REPO, 'tools', 'analysis', 'det_disalign_experiment.py')
    spec = importlib.util.spec_from_file_location('det_disalign_experiment',
                                                  path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_capping_uncapped_detections_equals_capped_test(
        det_stage1, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)  # predict() sets it
    tool = _tool()
    args = (det_stage1['config'], det_stage1['checkpoint'], data_root)
    uncapped, gt, _ = tool.predict(*args, str(tmp_path / 'u'))
    counts = tool.candidates_per_image(uncapped)
    caps = (300, 3)
    metrics = tool.evaluate_caps(gt, uncapped, caps)
    for cap in caps:
        capped, gt_c, reported = tool.predict(
            *args, str(tmp_path / f'c{cap}'), max_per_img=cap)
        assert gt_c == gt
        assert len(capped) <= cap * len({r['image_id'] for r in uncapped})
        again = tool.evaluate_caps(gt, capped, [cap])[cap]
        for key in tool.KEYS:
            # full precision: the capped test's own detections
            assert metrics[cap][key] == pytest.approx(again[key],
                                                      abs=1e-12), (cap, key)
            # the metric the runner reported (3 decimals, as mmdet's)
            assert metrics[cap][key] == pytest.approx(
                reported[f'lvis/bbox_{key}'], abs=5e-4 + 1e-9), (cap, key)
    # the cap of 3 binds on this model (otherwise the check above is void)
    assert counts['max'] > 3
    assert set(metrics['per_class']) == set(range(1, 9))


def test_candidates_per_image_by_hand():
    tool = _tool()
    dets = [dict(image_id=i) for i in (1, 1, 1, 2, 5, 5)]
    # image 1: 3, image 2: 1, image 5: 2 -> mean 2, max 3
    assert tool.candidates_per_image(dets) == dict(mean=2.0, max=3.0)


def test_missing_quickstart_run_is_named(tmp_path):
    tool = _tool()
    with pytest.raises(ValueError, match='quickstart.py --seeds 3'):
        tool.seed_dirs(str(tmp_path))
