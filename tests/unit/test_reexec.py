"""The command line a USR2 upgrade executes."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import monoceros
from monoceros.arbiter import reexec_argv


def test_a_script_is_run_again_by_its_path_from_the_launch_directory(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "monoceros").write_text("")
    argv = reexec_argv(["bin/monoceros", "-w", "2", "app:app"], str(tmp_path))
    assert argv == [sys.executable, str(tmp_path / "bin" / "monoceros"), "-w", "2", "app:app"]


def test_python_dash_m_imports_the_package_from_where_it_came_from(tmp_path: Path) -> None:
    main = os.path.join(os.path.dirname(monoceros.__file__), "__main__.py")
    argv = reexec_argv([main, "app:app"], str(tmp_path))
    assert argv[:2] == [sys.executable, "-c"]
    assert argv[3] == os.path.dirname(os.path.dirname(monoceros.__file__))
    assert argv[4:] == ["app:app"]
