# Copyright (c) lt_mm contributors. When does CDT (Ye et al., arXiv
# 2001.01385, Eq. 3) help on the quickstart classification data?
"""CDT: lt_mm's loss and head against a plain PyTorch loop, same everything.

CDT trains with softmax cross-entropy on ``z_c / a_c``,
``a_c = (N_max / N_c) ** gamma`` (CDT Eq. 3; ``a_c = 1`` for the largest
class, ``> 1`` for the tail), and predicts with the raw ``z_c``. This tool
trains one model per (recipe, implementation, method, seed) on the
quickstart classification data (:func:`lt_mm.quickstart.data.
build_task_data`, ImageNet-LT list format, counts 100 ... 2, 20 test
images per class) and prints many / medium / few / overall test accuracy
and the training accuracy of the few-shot classes (``train_few``, eval
mode, no augmentation) as mean ± std over the seeds.

Two implementations share the data, the backbone, its initialisation, the
batch order, the augmentation draws and the optimiser; only the classifier
and the loss differ:

* ``plain``: ``nn.Linear`` and ``F.cross_entropy(z / a, y)`` with ``a``
  computed inline here (independent of lt_mm), ``a = 1`` before
  ``start_epoch``, raw ``z`` at test;
* ``lt_mm``: the shipped ``LTLinearClsHead`` built from mmpretrain's
  registry with ``loss=dict(type='CDTLoss', ...)`` (baseline: mmpretrain's
  ``CrossEntropyLoss``), trained through ``head.loss(feats,
  data_samples)`` with the epoch published in mmengine's ``MessageHub``
  exactly as ``RuntimeInfoHook`` does, tested through the head's eval-mode
  forward (what ``head.predict`` uses).

Before training, :func:`check_agreement` feeds identical inputs to both
and prints the largest differences of the loss (temperatures off / on),
its gradient and the test logits (expected: float round-off).

Backbones: ``--arch cnn`` (default, fast: 2x2 average pooling to 16x16,
three conv-BN-ReLU blocks) or ``--arch resnet`` (the quickstart model's
architecture, ResNet-18 CIFAR with 16 base channels, in plain PyTorch;
about 10x slower on a CPU, ``--device cuda`` helps).

Recipes (see :data:`RECIPES`): ``quickstart`` is the stage-1 recipe of
``configs/quickstart/digits_cls_resnet_stage1.py`` (SGD 0.1, momentum 0.9,
weight decay 5e-4, cosine, 30 epochs, batch 32, RandomCrop 32 pad 2); the
``qs_*`` recipes change one factor of it (weight decay, augmentation,
constant rate, 60 / 120 epochs); ``plain`` is the 40-line recipe (SGD
0.05, no weight decay, constant rate, no augmentation, 60 epochs).

Usage::

    python tools/analysis/cdt_experiment.py [--seeds 0 1 2] [--fast]
        [--recipes quickstart qs_60ep plain ...] [--gamma 0.2]
        [--start-epoch 0] [--arch cnn|resnet] [--jobs 2]

``--fast`` uses the tiny quickstart data, 2 recipes, 1 seed and 1 epoch
(a smoke run for the tests, not evidence).
"""
import argparse
import os.path as osp
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

sys.path.insert(0,
                osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

IMPLS = ('plain', 'lt_mm', 'lt_mm_core')
METHODS = ('baseline', 'CDT')
GROUPS = ('many', 'medium', 'few', 'overall')
COLUMNS = GROUPS + ('train_few', )
# the class groups of the quickstart evaluator
# (configs/quickstart/digits_cls_resnet_stage1.py: many n > 25, few n < 10)
MANY_THR, FEW_THR = 25, 10


@dataclass(frozen=True)
class Recipe:
    """One training recipe (everything but the data and the loss)."""
    epochs: int = 30
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    cosine: bool = True
    crop_pad: int = 2  # RandomCrop(32, padding=pad); 0: no augmentation
    batch_size: int = 32
    note: str = ''


#: ``quickstart`` = the stage-1 recipe of the quickstart configs; the rest
#: change one factor of it, or are the plain 40-line recipe.
RECIPES: Dict[str, Recipe] = {
    'quickstart':
    Recipe(note='stage-1 recipe: wd 5e-4, crop, cosine, 30 ep'),
    'qs_wd0':
    Recipe(weight_decay=0.0, note='quickstart, weight decay 0'),
    'qs_noaug':
    Recipe(crop_pad=0, note='quickstart, no RandomCrop'),
    'qs_const':
    Recipe(cosine=False, note='quickstart, constant lr'),
    'qs_60ep':
    Recipe(epochs=60, note='quickstart, 60 epochs'),
    'qs_120ep':
    Recipe(epochs=120, note='quickstart, 120 epochs'),
    'plain':
    Recipe(
        epochs=60,
        lr=0.05,
        weight_decay=0.0,
        cosine=False,
        crop_pad=0,
        note='40-line loop: lr 0.05, no wd/aug, const, 60 ep'),
    'plain_wd':
    Recipe(
        epochs=60,
        lr=0.05,
        weight_decay=5e-4,
        cosine=False,
        crop_pad=0,
        note='40-line loop + weight decay 5e-4'),
}
DEFAULT_RECIPES = ('quickstart', 'qs_60ep')


# ----------------------------------------------------------------- data
def load_split(root: str, split: str) -> Tuple[Tensor, Tensor]:
    """Images of one ImageNet-LT list file as tensors.

    Returns:
        (x, y): uint8 (N, 3, H, W) RGB images and int64 (N,) labels.
    """
    from PIL import Image
    fname = {
        'train': 'ImageNet_LT_train.txt',
        'test': 'ImageNet_LT_test.txt',
        'val': 'ImageNet_LT_val.txt'
    }[split]
    xs, ys = [], []
    with open(osp.join(root, fname)) as f:
        for line in f:
            if not line.strip():
                continue
            rel, label = line.split()
            img = Image.open(osp.join(root, rel)).convert('RGB')
            xs.append(np.asarray(img))
            ys.append(int(label))
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).contiguous()
    return x, torch.tensor(ys, dtype=torch.long)


def normalise(x: Tensor) -> Tensor:
    """uint8 -> float, the quickstart ``data_preprocessor`` (mean = std =
    127.5, RGB)."""
    return (x.float() - 127.5) / 127.5


def random_crop(x: Tensor, pad: int, gen: torch.Generator) -> Tensor:
    """``RandomCrop(size=H, padding=pad)`` per image (zero padding).

    x: (N, C, H, W) float; returns the same shape.
    """
    if pad == 0:
        return x
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n, ), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n, ), generator=gen)
    rows = (dy[:, None] + torch.arange(h)[None]).reshape(n, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w)[None]).reshape(n, 1, 1, w)
    idx = torch.arange(n).reshape(n, 1, 1, 1)
    ch = torch.arange(x.shape[1]).reshape(1, -1, 1, 1)
    return xp[idx, ch, rows, cols]


# ---------------------------------------------------------------- model
class SmallCNN(nn.Module):
    """2x2 average pooling of the input (the digits are 8x8 scans upscaled
    to 32x32, so 16x16 keeps them), then three conv-BN-ReLU blocks and
    global average pooling: (N, 3, H, W) -> (N, D) features, D = 4 * width
    (the classifier is separate)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        w = width
        self.body = nn.Sequential(
            nn.AvgPool2d(2), nn.Conv2d(3, w, 3, padding=1), nn.BatchNorm2d(w),
            nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.BatchNorm2d(2 * w), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w),
            nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_dim = 4 * w

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class _BasicBlock(nn.Module):

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False),
                nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


class CifarResNet18(nn.Module):
    """The architecture of the quickstart stage-1 backbone (mmpretrain
    ``ResNet_CIFAR``, depth 18, stem_channels = base_channels = 16: 3x3
    stem, no max-pool, stages 16/32/64/128 with strides 1/2/2/2, two
    basic blocks each) + global average pooling, in plain PyTorch:
    (N, 3, 32, 32) -> (N, 128)."""

    def __init__(self, base: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, base, 3, 1, 1, bias=False), nn.BatchNorm2d(base),
            nn.ReLU())
        layers, cin = [], base
        for i, stride in enumerate((1, 2, 2, 2)):
            cout = base * 2**i
            layers += [
                _BasicBlock(cin, cout, stride),
                _BasicBlock(cout, cout, 1)
            ]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.out_dim = cin
        for m in self.modules():  # mmpretrain ResNet's init_cfg
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(
                    m.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(self.stem(x)).mean((2, 3))


def build_backbone(arch: str, width: int) -> nn.Module:
    """``'cnn'``: :class:`SmallCNN`; ``'resnet'``: :class:`CifarResNet18`
    (the quickstart model's architecture)."""
    if arch == 'cnn':
        return SmallCNN(width)
    if arch == 'resnet':
        return CifarResNet18()
    raise ValueError(f'arch={arch!r}: use cnn or resnet.')


def init_linear(fc: nn.Linear) -> None:
    """mmpretrain ``LinearClsHead``'s init: Normal(std=0.01), bias 0."""
    nn.init.normal_(fc.weight, 0.0, 0.01)
    nn.init.zeros_(fc.bias)


def plain_temperatures(counts: Sequence[int], gamma: float) -> Tensor:
    """a_c = (N_max / N_c) ** gamma, written here without lt_mm."""
    n = torch.tensor([float(c) for c in counts], dtype=torch.float64)
    return (n.max() / n).pow(gamma).float()


class PlainHead(nn.Module):
    """The plain loop's classifier and CDT loss (independent of lt_mm)."""

    def __init__(self, in_dim: int, counts: Sequence[int], gamma: float,
                 start_epoch: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, len(counts))
        self.register_buffer('a', plain_temperatures(counts, gamma))
        self.start_epoch = start_epoch

    def loss(self, feats: Tensor, labels: Tensor, epoch: int) -> Tensor:
        """CE on z / a (a = 1 before ``start_epoch``), mean over N."""
        z = self.fc(feats)
        if epoch >= self.start_epoch:
            z = z / self.a
        return F.cross_entropy(z, labels)

    def logits(self, feats: Tensor) -> Tensor:
        """Test logits: the raw z."""
        return self.fc(feats)


class LtmmHead(nn.Module):
    """lt_mm's ``LTLinearClsHead`` + ``CDTLoss`` (or mmpretrain's
    ``CrossEntropyLoss`` for gamma = None), driven as mmpretrain does."""

    def __init__(self, in_dim: int, counts: Sequence[int],
                 gamma: Optional[float], start_epoch: int) -> None:
        super().__init__()
        from mmengine.logging import MessageHub
        from mmpretrain.registry import MODELS

        import lt_mm.cls  # noqa: F401  (registers the head and the loss)
        if gamma is None:
            loss = dict(type='CrossEntropyLoss', loss_weight=1.0)
        else:
            loss = dict(
                type='CDTLoss',
                gamma=gamma,
                counts=list(counts),
                start_epoch=start_epoch)
        self.head = MODELS.build(
            dict(
                type='LTLinearClsHead',
                num_classes=len(counts),
                in_channels=in_dim,
                loss=loss))
        self.fc = self.head.fc
        # the runner's message hub; RuntimeInfoHook.before_train_epoch
        # does message_hub.update_info('epoch', runner.epoch)
        self.hub = MessageHub.get_instance(f'cdt_experiment_{id(self)}')

    def loss(self, feats: Tensor, labels: Tensor, epoch: int) -> Tensor:
        from mmpretrain.structures import DataSample
        self.hub.update_info('epoch', epoch)
        samples = [DataSample().set_gt_label(int(y)) for y in labels]
        self.head.train()
        return self.head.loss((feats, ), samples)['loss']

    def logits(self, feats: Tensor) -> Tensor:
        self.head.eval()
        out = self.head((feats, ))
        self.head.train(self.training)
        return out


class LtmmCoreHead(nn.Module):
    """``nn.Linear`` + lt_mm's framework-free
    :class:`lt_mm.core.cdt.CDTCrossEntropy` (what ``CDTLoss`` wraps), its
    ``epoch`` set as ``CDTLoss`` sets it from the ``MessageHub``. Used when
    mmpretrain cannot be imported; gamma = None: the same loss with
    gamma = 0 (plain CE)."""

    def __init__(self, in_dim: int, counts: Sequence[int],
                 gamma: Optional[float], start_epoch: int) -> None:
        super().__init__()
        from lt_mm.core.cdt import CDTCrossEntropy
        self.fc = nn.Linear(in_dim, len(counts))
        self.cdt = CDTCrossEntropy(
            list(counts), gamma or 0.0, start_epoch=start_epoch)

    def loss(self, feats: Tensor, labels: Tensor, epoch: int) -> Tensor:
        self.cdt.epoch = int(epoch)
        return self.cdt(self.fc(feats), labels)

    def logits(self, feats: Tensor) -> Tensor:
        return self.fc(feats)


def mmpretrain_available() -> bool:
    """Whether lt_mm.cls (mmpretrain, mmcv) imports."""
    try:
        import lt_mm.cls  # noqa: F401
    except ImportError:
        return False
    return True


def build_head(impl: str, in_dim: int, counts: Sequence[int], method: str,
               gamma: float, start_epoch: int) -> nn.Module:
    if impl == 'plain':
        g = gamma if method == 'CDT' else 0.0
        return PlainHead(in_dim, counts, g, start_epoch)
    g = gamma if method == 'CDT' else None
    if impl == 'lt_mm_core':
        return LtmmCoreHead(in_dim, counts, g, start_epoch)
    return LtmmHead(in_dim, counts, g, start_epoch)


# ------------------------------------------------------------- training
def per_class_accuracy(pred: Tensor, y: Tensor, num_classes: int) -> Tensor:
    """(N,) predictions and labels -> (C,) accuracy in percent."""
    return torch.stack([(pred[y == c] == c).float().mean() * 100
                        for c in range(num_classes)])


def group_accuracy(acc: Tensor, counts: Sequence[int]) -> Dict[str, float]:
    """Many / medium / few / overall (mean per-class accuracy, balanced
    test set) with the quickstart thresholds."""
    from lt_mm.core.stats import shot_splits
    splits = shot_splits(counts, MANY_THR, FEW_THR)
    out = {
        g: float(acc[idx].mean()) if idx else float('nan')
        for g, idx in splits.items()
    }
    out['overall'] = float(acc.mean())
    return out


def train_one(data: dict,
              recipe: Recipe,
              impl: str,
              method: str,
              gamma: float,
              start_epoch: int,
              seed: int,
              width: int = 32,
              arch: str = 'cnn',
              device: str = 'cpu') -> Dict[str, float]:
    """Train one model, return the test accuracies of
    :func:`group_accuracy`."""
    torch.manual_seed(seed)
    counts = data['counts']
    backbone = build_backbone(arch, width)
    head = build_head(impl, backbone.out_dim, counts, method, gamma,
                      start_epoch)
    torch.manual_seed(seed + 1000)
    init_linear(head.fc)
    model = nn.ModuleDict(dict(backbone=backbone, head=head)).to(device)
    opt = torch.optim.SGD(
        model.parameters(),
        lr=recipe.lr,
        momentum=recipe.momentum,
        weight_decay=recipe.weight_decay)
    sched = (
        torch.optim.lr_scheduler.CosineAnnealingLR(opt, recipe.epochs)
        if recipe.cosine else None)
    gen = torch.Generator().manual_seed(seed)
    x_tr, y_tr = data['x_train'], data['y_train']
    n = len(y_tr)
    model.train()
    for epoch in range(recipe.epochs):
        order = torch.randperm(n, generator=gen)
        for k in range(0, n, recipe.batch_size):
            idx = order[k:k + recipe.batch_size]
            xb = random_crop(normalise(x_tr[idx]), recipe.crop_pad, gen)
            loss = head.loss(
                backbone(xb.to(device)), y_tr[idx].to(device), epoch)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if sched is not None:
            sched.step()
    model.eval()
    with torch.no_grad():
        z = head.logits(backbone(normalise(data['x_test']).to(device)))
        z_tr = head.logits(backbone(normalise(x_tr).to(device)))
    z, z_tr = z.cpu(), z_tr.cpu()
    acc = per_class_accuracy(z.argmax(1), data['y_test'], len(counts))
    out = group_accuracy(acc, counts)
    # fit of the training set (no augmentation, eval mode): CDT assumes
    # the few-shot classes are over-fitted (training accuracy ~100 %)
    acc_tr = per_class_accuracy(z_tr.argmax(1), y_tr, len(counts))
    out['train_few'] = group_accuracy(acc_tr, counts)['few']
    return out


def check_agreement(counts: Sequence[int],
                    gamma: float,
                    start_epoch: int = 1,
                    seed: int = 0,
                    impl: str = 'lt_mm') -> Dict[str, float]:
    """Largest |plain - lt_mm| of loss, gradients and test logits.

    Both heads get the same weights, features (N=16) and labels; the loss
    is compared before (``epoch = start_epoch - 1``) and from
    ``start_epoch``; the test logits in eval mode (no temperatures).
    """
    gen = torch.Generator().manual_seed(seed)
    c, d = len(counts), 8
    feats = torch.randn(16, d, generator=gen) * 3
    labels = torch.randint(0, c, (16, ), generator=gen)
    plain = PlainHead(d, counts, gamma, start_epoch)
    ltmm = (LtmmCoreHead if impl == 'lt_mm_core' else LtmmHead)(d, counts,
                                                                gamma,
                                                                start_epoch)
    ltmm.fc.load_state_dict(plain.fc.state_dict())
    out = {}
    for tag, epoch in (('off', start_epoch - 1), ('on', start_epoch)):
        if epoch < 0:
            continue
        lp = plain.loss(feats, labels, epoch)
        ll = ltmm.loss(feats, labels, epoch)
        gp = torch.autograd.grad(lp, plain.fc.weight)[0]
        gl = torch.autograd.grad(ll, ltmm.fc.weight)[0]
        out[f'loss_{tag}'] = (lp - ll).abs().item()
        out[f'grad_{tag}'] = (gp - gl).abs().max().item()
        out[f'loss_{tag}_value'] = lp.item()
    with torch.no_grad():
        out['test_logits'] = (plain.logits(feats) -
                              ltmm.logits(feats)).abs().max().item()
        # the temperatures must not be applied at test time
        out['test_is_raw'] = (ltmm.logits(feats) -
                              feats @ plain.fc.weight.t() -
                              plain.fc.bias).abs().max().item()
    # the CDT loss must differ from plain CE when it is on
    plain_ce = PlainHead(d, counts, 0.0, 0)
    plain_ce.fc.load_state_dict(plain.fc.state_dict())
    out['cdt_minus_ce'] = (plain.loss(feats, labels, start_epoch) -
                           plain_ce.loss(feats, labels, 0)).item()
    return out


# ------------------------------------------------------------- driver
_DATA: dict = {}


def prepare_data(work_dir: str, size: str) -> dict:
    """Quickstart classification data (written once) as tensors."""
    from lt_mm.quickstart.data import build_task_data
    root = osp.join(work_dir, f'data_{size}', 'cls')
    summary = build_task_data('cls', root, size)
    x_tr, y_tr = load_split(root, 'train')
    x_te, y_te = load_split(root, 'test')
    counts = [int(v) for v in torch.bincount(y_tr, minlength=10)]
    if counts != list(summary['counts']):
        raise ValueError(f'counts {counts} != summary {summary["counts"]}')
    return dict(
        root=root,
        counts=counts,
        x_train=x_tr,
        y_train=y_tr,
        x_test=x_te,
        y_test=y_te)


def _init_worker(work_dir: str, size: str) -> None:
    torch.set_num_threads(1)
    _DATA.update(prepare_data(work_dir, size))


def _job(args: tuple) -> tuple:
    key, recipe, gamma, start_epoch, seed, width, arch, device = args
    start = time.time()
    res = train_one(_DATA, recipe, key[1], key[2], gamma, start_epoch, seed,
                    width, arch, device)
    return key, seed, res, time.time() - start


def _print_run(key: tuple, seed: int, res: dict, sec: float) -> None:
    print(
        f'  {key[0]:<10} {key[1]:<10} {key[2]:<8} seed {seed}: ' +
        ' '.join(f'{g} {res[g]:.1f}' for g in COLUMNS) + f'  ({sec:.0f} s)',
        flush=True)


def fmt(values: List[float]) -> str:
    """mean ± std (population std over the seeds)."""
    v = np.array(values, dtype=np.float64)
    return f'{v.mean():5.1f} ± {v.std():4.1f}'


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='CDT (Ye et al. Eq. 3): lt_mm vs a plain loop on the '
        'quickstart data, several recipes, mean ± std over seeds')
    p.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    p.add_argument(
        '--fast',
        action='store_true',
        help='tiny data, 1 seed, 1 epoch: a smoke run')
    p.add_argument(
        '--recipes',
        nargs='+',
        choices=sorted(RECIPES),
        help=f'default: {" ".join(DEFAULT_RECIPES)}')
    p.add_argument(
        '--impls',
        nargs='+',
        choices=IMPLS,
        help='default: plain lt_mm (plain lt_mm_core when '
        'mmpretrain / mmcv cannot be imported)')
    p.add_argument(
        '--gamma',
        type=float,
        default=0.2,
        help='CDT gamma (the quickstart config uses 0.2)')
    p.add_argument(
        '--start-epoch',
        type=int,
        default=0,
        help='first epoch with temperatures (0: always)')
    p.add_argument(
        '--arch',
        choices=['cnn', 'resnet'],
        default='cnn',
        help='cnn: small CNN on 16x16 (fast); resnet: the '
        'quickstart ResNet-18 (16 channels) architecture')
    p.add_argument(
        '--device',
        default='cpu',
        help="torch device of the training, e.g. 'cuda'")
    p.add_argument(
        '--width',
        type=int,
        default=32,
        help='channels of the first conv of the small CNN')
    p.add_argument(
        '--jobs',
        type=int,
        help='parallel worker processes, 1 thread each '
        '(default 2; 1 with --fast)')
    p.add_argument('--work-dir', default='work_dirs/cdt_experiment')
    return p.parse_args(argv)


def main(argv=None) -> Dict:
    args = parse_args(argv)
    t0 = time.time()
    torch.set_num_threads(1)
    size = 'fast' if args.fast else 'full'
    recipes = list(
        args.recipes
        or (('quickstart', 'plain') if args.fast else DEFAULT_RECIPES))
    seeds = args.seeds[:1] if args.fast else args.seeds
    recipe_objs = {
        r: (replace(RECIPES[r], epochs=1) if args.fast else RECIPES[r])
        for r in recipes
    }
    if args.jobs is None:
        args.jobs = 1 if args.fast else 2
    data = prepare_data(args.work_dir, size)
    if args.impls is None:
        if mmpretrain_available():
            args.impls = ['plain', 'lt_mm']
        else:
            args.impls = ['plain', 'lt_mm_core']
            print('NOTE: mmpretrain / mmcv cannot be imported: lt_mm_core '
                  '= lt_mm.core.cdt.CDTCrossEntropy instead of the head + '
                  'CDTLoss')
    print(f'data: {data["root"]}  train counts {data["counts"]}  test '
          f'{len(data["y_test"])} images; gamma {args.gamma}, start_epoch '
          f'{args.start_epoch}; a_c = (N_max/N_c)^gamma = ' +
          ', '.join(f'{v:.2f}'
                    for v in plain_temperatures(data['counts'], args.gamma)))

    other = [i for i in args.impls if i != 'plain']
    if other:
        agree = check_agreement(
            data['counts'],
            args.gamma,
            max(args.start_epoch, 1),
            impl=other[0])
        print(f'agreement plain vs {other[0]} on identical inputs (max abs '
              'diff): ' +
              ', '.join(f'{k} {v:.2e}' for k, v in agree.items()
                        if not k.endswith('_value') and k != 'cdt_minus_ce') +
              f'; CDT loss - CE loss = {agree["cdt_minus_ce"]:+.4f}')
    else:
        agree = {}

    jobs = []
    for r in recipes:
        for impl in args.impls:
            for method in METHODS:
                for s in seeds:
                    jobs.append(((r, impl, method), recipe_objs[r], args.gamma,
                                 args.start_epoch, s, args.width, args.arch,
                                 args.device))
    results: Dict[tuple, Dict[int, dict]] = {}
    seconds = []
    if args.jobs > 1:
        import multiprocessing as mp
        ctx = mp.get_context('fork' if args.device == 'cpu' else 'spawn')
        with ProcessPoolExecutor(
                args.jobs,
                mp_context=ctx,
                initializer=_init_worker,
                initargs=(args.work_dir, size)) as ex:
            futures = [ex.submit(_job, job) for job in jobs]
            for fut in as_completed(futures):
                key, s, res, sec = fut.result()
                results.setdefault(key, {})[s] = res
                seconds.append(sec)
                _print_run(key, s, res, sec)
    else:
        _DATA.update(data)
        for job in jobs:
            key, s, res, sec = _job(job)
            results.setdefault(key, {})[s] = res
            seconds.append(sec)
            _print_run(key, s, res, sec)

    print()
    print(f'test accuracy (%), mean ± std over seeds {seeds}; gamma '
          f'{args.gamma}, start_epoch {args.start_epoch}; data '
          f'{data["root"]}')
    head = f'{"recipe":<11}{"impl":<11}{"method":<9}' + ''.join(
        f'{g:>14}' for g in COLUMNS) + f'{"few gain":>14}'
    print(head)
    print('-' * len(head))
    table = {}
    for r in recipes:
        for impl in args.impls:
            for method in METHODS:
                per_seed = results[(r, impl, method)]
                row = {g: [per_seed[s][g] for s in seeds] for g in COLUMNS}
                gain = ''
                if method == 'CDT':
                    base = results[(r, impl, 'baseline')]
                    diff = [per_seed[s]['few'] - base[s]['few'] for s in seeds]
                    gain = fmt(diff)
                    row['few_gain'] = diff
                table[(r, impl, method)] = row
                print(f'{r:<11}{impl:<11}{method:<9}' +
                      ''.join(f'{fmt(row[g]):>14}'
                              for g in COLUMNS) + f'{gain:>14}')
        print(f'{"":<11}({recipe_objs[r].note})')
    wall = time.time() - t0
    print(f'{len(jobs)} runs, {np.mean(seconds):.1f} s per run, wall '
          f'{wall:.0f} s ({args.jobs} job(s), torch threads 1)')
    return dict(
        table=table,
        agreement=agree,
        wall=wall,
        recipes={
            r: asdict(v)
            for r, v in recipe_objs.items()
        })


if __name__ == '__main__':
    main()
