"""The monoceros command: early exits (one readable line, the right status) and the hand-off."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from monoceros import __version__
from monoceros.cli import APP_LOAD_ERROR, USAGE_ERROR, main
from monoceros.config import SETTINGS, Config

DATA = Path(__file__).parent / "data" / "config"
ENV_VARS = ("MONOCEROS_CMD_ARGS", "PORT", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS")
WSGI_APP = "def app(environ, start_response):\n    return [b'x']\n"


def run(args: list[str], cwd: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    env.update(extra_env)
    return subprocess.run(
        [sys.executable, "-m", "monoceros", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_one_error_line(
    result: subprocess.CompletedProcess[str], status: int, message: str
) -> None:
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [f"monoceros: error: {message}"]
    assert result.stdout == ""


# --- error paths, as a real process ----------------------------------------------------------


def test_bad_app_path_exits_4(tmp_path: Path) -> None:
    result = run(["nosuchmodule:app"], tmp_path)
    assert_one_error_line(result, APP_LOAD_ERROR, "No module named 'nosuchmodule'.")
    assert APP_LOAD_ERROR == 4


def test_bad_setting_value_exits_2(tmp_path: Path) -> None:
    result = run(["-w", "abc", "myapp:app"], tmp_path)
    assert_one_error_line(result, USAGE_ERROR, "workers: expected a positive integer, got 'abc'")
    assert USAGE_ERROR == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--max-worker-memory", "-100"],
            "max_worker_memory: expected a non-negative integer, got '-100'",
        ),
        (
            ["--max-worker-lifetime", "soon"],
            "max_worker_lifetime: expected a non-negative number of seconds, got 'soon'",
        ),
    ],
)
def test_bad_recycling_values_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    assert_one_error_line(run([*args, "myapp:app"], tmp_path), USAGE_ERROR, message)


def test_bad_option_exits_2(tmp_path: Path) -> None:
    result = run(["--bogus-option", "myapp:app"], tmp_path)
    assert_one_error_line(result, USAGE_ERROR, "unrecognized arguments: --bogus-option")


def test_bad_env_args_exit_2(tmp_path: Path) -> None:
    result = run(["myapp:app"], tmp_path, MONOCEROS_CMD_ARGS="--workers")
    assert_one_error_line(
        result, USAGE_ERROR, "MONOCEROS_CMD_ARGS: argument -w/--workers: expected one argument"
    )


def test_missing_app_module_exits_2(tmp_path: Path) -> None:
    result = run([], tmp_path)
    assert_one_error_line(
        result,
        USAGE_ERROR,
        "no application given: pass APP_MODULE (e.g. myapp:app) or set wsgi_app in the config file",
    )


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    result = run(["-c", "missing.conf.py", "myapp:app"], tmp_path)
    assert_one_error_line(result, USAGE_ERROR, "config: no such file 'missing.conf.py'")


def test_config_file_that_raises_exits_2(tmp_path: Path) -> None:
    path = str(DATA / "raises.conf.py")
    result = run(["-c", path, "myapp:app"], tmp_path)
    assert_one_error_line(
        result, USAGE_ERROR, f"config file {path!r}, line 4: ZeroDivisionError: division by zero"
    )


def test_check_config_with_a_good_app_exits_0(tmp_path: Path) -> None:
    (tmp_path / "goodapp.py").write_text(WSGI_APP, encoding="utf-8")
    result = run(["--check-config", "goodapp:app"], tmp_path)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_check_config_with_an_app_that_does_not_load(tmp_path: Path) -> None:
    (tmp_path / "factoryapp.py").write_text("def make(name):\n    return print\n", encoding="utf-8")
    result = run(["--check-config", "factoryapp:make()"], tmp_path)
    assert_one_error_line(
        result,
        APP_LOAD_ERROR,
        "Failed to call factory 'make()' in 'factoryapp': missing a required argument: 'name'.",
    )


def test_check_config_shows_the_traceback_of_a_broken_app(tmp_path: Path) -> None:
    (tmp_path / "brokenapp.py").write_text(
        "import monoceros_missing_dependency\n", encoding="utf-8"
    )
    result = run(["--check-config", "brokenapp:app"], tmp_path)
    assert result.returncode == APP_LOAD_ERROR
    assert "Traceback" in result.stderr
    assert "No module named 'monoceros_missing_dependency'" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        "monoceros: error: failed to load application 'brokenapp:app'"
    )


def test_version(tmp_path: Path) -> None:
    result = run(["--version"], tmp_path)
    assert (result.returncode, result.stdout) == (0, f"monoceros (version {__version__})\n")


# --- in-process paths ------------------------------------------------------------------------


@pytest.fixture
def clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run main() from tmp_path with a clean environment; restore cwd, sys.path, modules."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    modules = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - modules:
        if name.startswith("cli_test_"):
            del sys.modules[name]


def exit_status(argv: list[str]) -> object:
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code


def test_print_config(clean: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_status(["--print-config", "-w", "3", "-b", "unix:/tmp/x.sock"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines == sorted(lines)
    assert "workers = 3" in lines
    assert "bind = ['unix:/tmp/x.sock']" in lines
    assert "print_config = True" in lines
    assert len(lines) == len(SETTINGS)


def test_check_config_prints_warnings(clean: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (clean / "cli_test_app.py").write_text(WSGI_APP, encoding="utf-8")
    (clean / "typo.conf.py").write_text("worker = 2\n", encoding="utf-8")
    assert exit_status(["--check-config", "-c", "typo.conf.py", "cli_test_app:app"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        f"monoceros: Using config file {clean / 'typo.conf.py'}",
        "monoceros: warning: unknown setting 'worker' in typo.conf.py (did you mean 'workers'?)",
    ]


def test_app_module_from_the_config_file(clean: Path) -> None:
    (clean / "cli_test_conf_app.py").write_text(WSGI_APP, encoding="utf-8")
    (clean / "monoceros.conf.py").write_text(
        "wsgi_app = 'cli_test_conf_app:app'\n", encoding="utf-8"
    )
    assert exit_status(["--check-config"]) == 0


def test_apply_paths_runs_before_the_app_check(clean: Path) -> None:
    (clean / "site").mkdir()
    (clean / "site" / "cli_test_chdir_app.py").write_text(WSGI_APP, encoding="utf-8")
    assert exit_status(["--check-config", "--chdir", "site", "cli_test_chdir_app:app"]) == 0
    assert os.getcwd() == str(clean / "site")


class _RecordingArbiter:
    """Stands in for monoceros.arbiter.Arbiter, which forks real processes."""

    created: list[Config] = []

    def __init__(
        self, cfg: Config, launch_dir: str | None = None, tls_context: object = None
    ) -> None:
        self.created.append(cfg)
        self.launch_dir = launch_dir
        self.tls_context = tls_context

    def run(self) -> int:
        return 7


@pytest.fixture
def recording_arbiter(monkeypatch: pytest.MonkeyPatch) -> type[_RecordingArbiter]:
    module = types.ModuleType("monoceros.arbiter")
    module.Arbiter = _RecordingArbiter  # type: ignore[attr-defined]
    module.load_tls = lambda cfg: None  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "monoceros.arbiter", module)
    _RecordingArbiter.created = []
    return _RecordingArbiter


def test_main_hands_the_config_to_the_arbiter(
    clean: Path, recording_arbiter: type[_RecordingArbiter]
) -> None:
    (clean / "cli_test_run_app.py").write_text(WSGI_APP, encoding="utf-8")
    assert exit_status(["-w", "2", "cli_test_run_app:app"]) == 7
    [cfg] = recording_arbiter.created
    assert (cfg.workers, cfg.wsgi_app, cfg.argv) == (
        2,
        "cli_test_run_app:app",
        ["-w", "2", "cli_test_run_app:app"],
    )
    assert "cli_test_run_app" not in sys.modules  # only the master's cheap check ran


def test_bad_app_never_reaches_the_arbiter(
    clean: Path,
    recording_arbiter: type[_RecordingArbiter],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert exit_status(["cli_test_missing:app"]) == APP_LOAD_ERROR
    assert recording_arbiter.created == []
    assert capsys.readouterr().err == "monoceros: error: No module named 'cli_test_missing'.\n"
