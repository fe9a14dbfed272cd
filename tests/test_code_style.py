"""The code follows the style setup.cfg declares (OpenMMLab's conventions):
flake8, isort and yapf, at the versions pinned in requirements/tests.txt.

Each check runs the tool as a user would from the repository root, on the
folders that hold Python code, and fails with the tool's own report and the
command that fixes it.
"""
import importlib.util
import os.path as osp
import subprocess
import sys

import pytest

from .conftest import REPO

PATHS = ['lt_mm', 'tools', 'tests', 'benchmarks', 'configs', 'setup.py']


def _pinned(name: str) -> str:
    """The version requirements/tests.txt pins for ``name``."""
    with open(osp.join(REPO, 'requirements', 'tests.txt')) as f:
        for line in f:
            if line.split('==')[0].strip() == name:
                return line.split('==')[1].strip()
    raise AssertionError(f'requirements/tests.txt pins no {name}')


def _run(module: str, args, fix: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.fail(f'{module} is not installed: pip install -r '
                    'requirements/tests.txt (tools/install.sh does)')
    proc = subprocess.run([sys.executable, '-m', module, *args, *PATHS],
                          cwd=REPO,
                          capture_output=True,
                          text=True)
    report = (proc.stdout + proc.stderr)[-4000:]
    assert proc.returncode == 0 and not proc.stdout.strip(), (
        f'{module} finds style problems; fix them with `{fix}`:\n{report}')


@pytest.mark.parametrize('tool', ['flake8', 'isort', 'yapf'])
def test_pinned_tool_is_installed(tool):
    from importlib.metadata import version
    assert version(tool) == _pinned(tool), (
        f'{tool} {version(tool)} is installed, requirements/tests.txt pins '
        f'{_pinned(tool)}: another version formats differently')


def test_flake8():
    _run('flake8', [], 'flake8 ' + ' '.join(PATHS) + ' (by hand)')


def test_isort():
    _run('isort', ['--check-only', '--quiet'], 'isort ' + ' '.join(PATHS))


def test_yapf():
    _run('yapf', ['--recursive', '--diff', '--parallel'],
         'yapf -r -i ' + ' '.join(PATHS))
