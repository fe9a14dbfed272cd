# Copyright (c) lt_mm contributors. Per-class training counts of an LVIS
# json, written where the LVIS paper configs read them.
"""Write the ``lt_mm.class_stats/v1`` file of an LVIS training json.

Usage::

    python tools/lvis_counts.py ANN_FILE [--unit images|instances]
        [--out PATH]

The counts come from the json's own ``image_count`` / ``instance_count``
fields (:func:`lt_mm.det.counts.lvis_class_stats`); the default output,
``<stem>_class_stats_<unit>.json`` next to the json, is the ``stats_file``
of the ``configs/lvis`` paper configs (GRW, CDT, the post-hoc rules). To
count the training set of any config instead, use
``tools/class_stats.py CONFIG``.
"""
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from lt_mm.det.counts import main

if __name__ == '__main__':
    main()
