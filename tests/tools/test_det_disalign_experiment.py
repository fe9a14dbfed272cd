"""tools/analysis/det_disalign_experiment.py: evaluating the top k of the
uncapped detections equals testing with ``max_per_img=k`` (the tool's
premise), the candidate count by hand, and the missing-run error."""
import os.path as osp

import pytest

from tests.conftest import load_script

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _tool():
    return load_script('tools', 'analysis', 'det_disalign_experiment.py')


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
            assert metrics[cap][key] == pytest.approx(
                again[key], abs=1e-12), (cap, key)
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


def test_gt_box_classification_matches_the_classifier_by_hand(
        det_stage1, data_root, tmp_path, monkeypatch):
    """top-1 and true-class rank per frequency group, recomputed by hand
    from the detector's own box-head forward on the training split's
    ground-truth boxes (``roi_head._bbox_forward``; the tool goes through
    the recorded inputs of ``fc_cls`` instead)."""
    import json

    import torch
    from mmdet.structures.bbox import bbox2roi, get_box_tensor

    from lt_mm.det.hooks import gt_box_dataloader_cfg
    from lt_mm.engine.runner_utils import build_runner, load_config
    monkeypatch.setenv('LT_MM_DATA_ROOT', data_root)
    tool = _tool()
    got = tool.gt_box_classification(det_stage1['config'],
                                     det_stage1['checkpoint'], data_root,
                                     str(tmp_path / 'tool'), 'train')
    cfg = load_config(det_stage1['config'], None, str(tmp_path / 'ref'))
    cfg.load_from = det_stage1['checkpoint']
    runner = build_runner(cfg)
    runner.load_or_resume()
    loader = runner.build_dataloader(gt_box_dataloader_cfg(cfg))
    model = runner.model.eval()
    scores, targets = [], []
    with torch.no_grad():
        for data in loader:
            data = model.data_preprocessor(data, False)
            boxes = [
                get_box_tensor(s.gt_instances.bboxes)
                for s in data['data_samples']
            ]
            out = model.roi_head._bbox_forward(
                model.extract_feat(data['inputs']), bbox2roi(boxes))
            scores.append(out['cls_score'])
            targets += [s.gt_instances.labels for s in data['data_samples']]
    logits = torch.cat(scores)[:, :-1]  # foreground columns
    labels = torch.cat(targets).long()
    with open(loader.dataset.ann_file) as f:
        cats = json.load(f)['categories']
    letters = [c['frequency'] for c in cats]  # category order = label order
    expected = {}
    for g in 'rcf':
        rows = [i for i, y in enumerate(labels.tolist()) if letters[y] == g]
        if not rows:
            continue
        z, y = logits[rows], labels[rows]
        true = z[torch.arange(len(rows)), y]
        rank = [1 + int((z[i] > true[i]).sum()) for i in range(len(rows))]
        expected[g] = dict(
            top1=float((z.argmax(1) == y).float().mean()),
            rank=sum(rank) / len(rank),
            boxes=len(rows))
    # per-class AUC of the softmax score over every (own box, other box)
    # pair, ties 1/2, averaged over the group's classes
    probs = torch.softmax(torch.cat(scores), 1).tolist()
    y_all = labels.tolist()
    aucs = {g: [] for g in 'rcf'}
    for c, letter in enumerate(letters):
        own = [p[c] for p, y in zip(probs, y_all) if y == c]
        other = [p[c] for p, y in zip(probs, y_all) if y != c]
        if own and other:
            wins = sum((a > b) + 0.5 * (a == b) for a in own for b in other)
            aucs[letter].append(wins / (len(own) * len(other)))
    assert set(got) == set(expected) and got
    for g in expected:
        assert got[g]['boxes'] == expected[g]['boxes']
        assert got[g]['top1'] == pytest.approx(expected[g]['top1'], abs=1e-6)
        assert got[g]['rank'] == pytest.approx(expected[g]['rank'], abs=1e-6)
        assert got[g]['AUC'] == pytest.approx(
            sum(aucs[g]) / len(aucs[g]), abs=1e-6)


def test_gt_box_classification_refuses_an_unknown_split(
        det_stage1, data_root, tmp_path):
    tool = _tool()
    with pytest.raises(ValueError, match="'val' or 'train'.*'test'"):
        tool.gt_box_classification(det_stage1['config'],
                                   det_stage1['checkpoint'], data_root,
                                   str(tmp_path), 'test')


def test_gt_box_table_by_hand():
    tool = _tool()

    def seed(top1_r, rank_r):
        split = dict(
            r=dict(top1=top1_r, rank=rank_r, boxes=2, AUC=0.8),
            c=dict(top1=0.5, rank=2.0, boxes=4, AUC=0.9),
            f=dict(top1=1.0, rank=1.0, boxes=9, AUC=1.0))
        return {'stage1': dict(gt_boxes=dict(train=split, val=split))}

    text = tool.gt_box_table([seed(0.0, 7.0), seed(0.5, 5.0)])
    lines = text.splitlines()
    assert lines[0].startswith('| split | model | r top-1 | r rank | r AUC |')
    # r top-1: mean 25.0, sample std 35.4; rank: mean 6.00, std 1.41
    assert lines[2] == ('| train | stage1 | 25.0 ± 35.4 | 6.00 ± 1.41 | '
                        '80.0 ± 0.0 | 50.0 ± 0.0 | 2.00 ± 0.00 | '
                        '90.0 ± 0.0 | 100.0 ± 0.0 | 1.00 ± 0.00 | '
                        '100.0 ± 0.0 |')
    assert lines[3].startswith('| val | stage1 | 25.0 ± 35.4 |')


def test_method_spec_by_hand():
    tool = _tool()
    assert tool.method_spec('digits_det_disalign') == (
        'digits_det_disalign', 'digits_det_disalign.py')
    assert tool.method_spec('lr01=digits_det_disalign') == (
        'lr01', 'digits_det_disalign.py')
    assert tool.method_spec('lr01=digits_det_disalign.py') == (
        'lr01', 'digits_det_disalign.py')


@pytest.mark.parametrize(
    'spec', ['lr01=', '=digits_det_disalign', 'a/b=digits_det_disalign'])
def test_malformed_method_spec_is_named(spec):
    with pytest.raises(ValueError, match='FOLDER=CONFIG'):
        _tool().method_spec(spec)


def test_unknown_method_config_is_named_before_any_test(tmp_path):
    # the work dir holds no run: the config error comes first
    with pytest.raises(ValueError, match="no config digits_det_nope.py"):
        _tool().main(
            ['--work-dir',
             str(tmp_path), '--methods', 'x=digits_det_nope'])
