"""The quickstart's set-up and packaging (issue #22, items 1 and 8): a too-old Python is refused in one line and leaves no `.venv`.

`make PY=python3.10 demo` used to leave a broken `.venv` that every later `make` kept using. The Makefile
now checks the version first and removes `.venv` after a failed set-up; this runs its `setup` target in a
scratch folder with a stand-in interpreter that reports Python 3.10 (nothing is installed).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_a_python_older_than_3_11_is_refused_before_anything_is_made(tmp_path):
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    old = tmp_path / "python3.10"
    old.write_text('#!/bin/sh\n[ "$1" = "-c" ] && exec python3 -c "import sys; sys.version_info = (3, 10, 0)\n$2"\n'
                   'exec python3 "$@"\n')
    old.chmod(0o755)
    proc = subprocess.run(["make", f"PY={old}", "setup"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode != 0
    assert "palme-tabletop needs Python >= 3.11" in proc.stderr + proc.stdout
    assert "make PY=python3.11" in proc.stderr + proc.stdout
    assert not (tmp_path / ".venv").exists()


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_a_failed_set_up_removes_the_half_made_venv(tmp_path):
    shutil.copy(REPO / "Makefile", tmp_path / "Makefile")
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    broken = tmp_path / "python3"
    broken.write_text('#!/bin/sh\n[ "$1" = "-m" ] && { mkdir -p .venv/bin; exit 1; }\nexec python3 "$@"\n')  # venv fails
    broken.chmod(0o755)
    proc = subprocess.run(["make", f"PY={broken}", "setup"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode != 0 and "set-up failed: .venv removed" in proc.stdout + proc.stderr
    assert not (tmp_path / ".venv").exists()


def test_the_package_metadata_reads_without_deprecation_warnings():
    """#22 item 8: setuptools warned three times per install that a table `project.license` is deprecated."""
    import warnings

    setuptools_config = pytest.importorskip("setuptools.config.pyprojecttoml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = setuptools_config.read_configuration(REPO / "pyproject.toml", expand=True)
    assert [str(w.message) for w in caught] == []
    assert cfg["project"]["license"] == "Apache-2.0"  # an SPDX expression (PEP 639), not a table
