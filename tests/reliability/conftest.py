"""Shared helpers for the reliability tests (read-only for other files).

* :func:`folder_hash`: sha256 of every file below a folder, to assert that
  nothing existing on disk changed;
* :func:`write_evil_checkpoint`: a torch checkpoint whose unpickling would
  create a marker file (``os.system('touch ...')``);
* ``http_root`` fixture: a folder served by a local ``http.server`` on
  127.0.0.1 (random free port, daemon thread, stopped after the session);
* ``seg_stage1``: the session stage-1 segmentation checkpoint, trained after
  the class statistics its metric reads exist (as in tests/seg).
"""
from __future__ import annotations

import functools
import hashlib
import http.server
import os
import os.path as osp
import threading
from typing import Dict, List

import pytest
import torch

from tests.seg.conftest import seg_stats  # noqa: F401  (fixture)


def folder_hash(folder: str) -> Dict[str, str]:
    """``{relative path: sha256}`` of every file below ``folder``."""
    out = {}
    for root, _, files in os.walk(folder):
        for f in files:
            path = osp.join(root, f)
            with open(path, 'rb') as fh:
                out[osp.relpath(path, folder)] = hashlib.sha256(
                    fh.read()).hexdigest()
    return out


class _Payload:
    """Unpickling this calls ``os.system(cmd)``."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd, ))


def write_evil_checkpoint(path: str, marker: str) -> None:
    """A checkpoint (real state_dict and meta) whose ``meta`` runs
    ``touch marker`` when unpickled without ``weights_only``."""
    torch.save(
        dict(
            meta=dict(epoch=1, iter=1, payload=_Payload(f'touch {marker}')),
            state_dict={'w': torch.zeros(2)}), path)


class _Handler(http.server.SimpleHTTPRequestHandler):
    hits: List[str] = []

    def do_GET(self):  # noqa: N802
        type(self).hits.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # quiet
        pass


@pytest.fixture(scope='session')
def http_root(tmp_path_factory):
    """``(base_url, folder, hits)``: files written to ``folder`` are served
    at ``base_url/<name>``; ``hits`` lists the requested paths."""
    folder = str(tmp_path_factory.mktemp('http_root'))
    handler = functools.partial(_Handler, directory=folder)
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield (f'http://127.0.0.1:{server.server_address[1]}', folder,
               _Handler.hits)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> str:
    """A fresh torch hub cache (``TORCH_HOME``) for this test."""
    home = str(tmp_path / 'torch_home')
    monkeypatch.setenv('TORCH_HOME', home)
    return home


@pytest.fixture(scope='session')
def seg_stage1(seg_stats, seg_stage1) -> dict:  # noqa: F811
    """The session stage-1 checkpoint, trained after the statistics exist."""
    return seg_stage1
