"""The optional compiled core: which modules run compiled, and the switches to their source."""

from __future__ import annotations

import ast
import importlib.machinery
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monoceros._compiled import COMPILED_MODULES, NATIVE_MODULES, _SourceFirst

REPO = Path(__file__).resolve().parents[2]
SUFFIX = importlib.machinery.EXTENSION_SUFFIXES[0]


def compiled_in_subprocess(pure: bool) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "MONOCEROS_PURE"}
    if pure:
        env["MONOCEROS_PURE"] = "1"
    out = subprocess.run(
        [sys.executable, "-c", "from monoceros._compiled import compiled; print(compiled())"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return ast.literal_eval(out.stdout)  # type: ignore[no-any-return]


def built(name: str, suffix: str = ".py") -> bool:
    """Whether a compiled module newer than its source (``.py``, or ``.c``) sits beside it."""
    base = REPO / Path(*name.split("."))
    source = base.with_suffix(suffix)
    extension = base.parent / (base.name + SUFFIX)
    return extension.exists() and extension.stat().st_mtime >= source.stat().st_mtime


def fake_build(tmp_path: Path, source_name: str, text: str, source_newer: bool) -> Path:
    """A package ``pkg`` with a module's source and a stand-in for its compiled file, one of the
    two the newer; returns the source's path."""
    package = tmp_path / "pkg"
    package.mkdir()
    source = package / source_name
    source.write_text(text)
    extension = package / (source_name.rpartition(".")[0] + SUFFIX)
    extension.write_bytes(b"not loaded by this test")
    old, new = 1_000_000_000, 1_000_000_100
    os.utime(source, (new, new) if source_newer else (old, old))
    os.utime(extension, (old, old) if source_newer else (new, new))
    return source


def test_the_compiled_modules_run_compiled_where_built() -> None:
    expected = [name for name in COMPILED_MODULES if built(name)]
    expected += [name for name in NATIVE_MODULES if built(name, ".c")]
    assert compiled_in_subprocess(pure=False) == expected
    if os.environ.get("MONOCEROS_EXPECT_COMPILED") == "1":  # set by scripts/test with a C compiler
        assert expected == list(COMPILED_MODULES + NATIVE_MODULES), "the build made no core"


@pytest.mark.parametrize(
    ("pure", "source_newer", "refused"),
    [
        (False, False, False),
        (False, True, True),
        (True, False, True),
    ],
)
def test_a_c_extension_is_refused_when_pure_or_stale(
    tmp_path: Path, pure: bool, source_newer: bool, refused: bool
) -> None:
    """MONOCEROS_PURE, or a ``.c`` edited since the build: its import fails, so the importer
    falls back to the Python twin (an ImportError it catches); else the usual import runs."""
    package = fake_build(tmp_path, "native.c", "/* a C twin */\n", source_newer).parent
    finder = _SourceFirst(frozenset(), everyone=pure, natives=frozenset({"pkg.native"}))
    if refused:
        with pytest.raises(ModuleNotFoundError, match=r"pkg\.native is not loaded"):
            finder.find_spec("pkg.native", [str(package)])
    else:
        assert finder.find_spec("pkg.native", [str(package)]) is None
    assert finder.find_spec("pkg.other", [str(package)]) is None


def test_monoceros_pure_parses_uwsgi_vars_in_python() -> None:
    code = "from monoceros.protocols import uwsgi; print(uwsgi._parse_vars.__name__)"
    for pure, expected in (("1", "_vars_fast"), ("", "parse_vars")):
        env = {k: v for k, v in os.environ.items() if k != "MONOCEROS_PURE"}
        env["MONOCEROS_PURE"] = pure
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
        )
        if not pure and not built(NATIVE_MODULES[0], ".c"):
            expected = "_vars_fast"  # no C compiler: the Python twin
        assert out.stdout.strip() == expected, out.stderr


def test_monoceros_pure_loads_the_python_source() -> None:
    assert compiled_in_subprocess(pure=True) == []


@pytest.mark.parametrize(("source_newer", "finds_source"), [(True, True), (False, False)])
def test_a_source_edited_after_the_build_wins(
    tmp_path: Path, source_newer: bool, finds_source: bool
) -> None:
    """An editable install whose source was edited since its build runs the source."""
    source = fake_build(tmp_path, "mod.py", "VALUE = 1\n", source_newer)
    package = source.parent
    spec = _SourceFirst(frozenset({"pkg.mod"}), everyone=False).find_spec("pkg.mod", [str(package)])
    assert (spec is not None and spec.origin == str(source)) is finds_source
    everyone = _SourceFirst(frozenset({"pkg.mod"}), everyone=True).find_spec(
        "pkg.mod", [str(package)]
    )
    assert everyone is not None and everyone.origin == str(source)
    assert (
        _SourceFirst(frozenset({"pkg.mod"}), everyone=True).find_spec("pkg.other", [str(package)])
        is None
    )


def test_the_pure_pass_tests_every_compiled_module() -> None:
    """scripts/test runs the unit tests of each compiled module once more against its source:
    a module added to COMPILED_MODULES needs a test file of its own in that pass."""
    script = (REPO / "scripts" / "test").read_text()
    pure_pass = script[script.index("MONOCEROS_PURE=1 .venv/bin/python -m pytest") :]
    files = [word for word in pure_pass.split() if word.startswith("tests/unit/")]
    sources = {name: (REPO / name).read_text() for name in files}
    for module in COMPILED_MODULES:
        package, _, leaf = module.rpartition(".")
        imported = (f"import {module}", f"from {module} import", f"from {package} import {leaf}")
        assert any(any(form in text for form in imported) for text in sources.values()), (
            f"no test file of the MONOCEROS_PURE=1 pass in scripts/test imports {module}"
        )
