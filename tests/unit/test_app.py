"""Finding and importing the application: app specs, load_app, check_app_spec, apply_paths."""

from __future__ import annotations

import importlib
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from monoceros.app import AppLoadError, apply_paths, check_app_spec, load_app, parse_app_spec
from monoceros.config import Config

WSGI_APP = "def app(environ, start_response):\n    return [b'x']\n"

MakeModule = Callable[..., str]


@pytest.fixture
def make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeModule]:
    """Write a uniquely named module (or package.module) and return its dotted name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    roots: list[str] = []

    def make(source: str, package: bool = False) -> str:
        root = f"monoceros_testapp_{uuid.uuid4().hex[:10]}"
        roots.append(root)
        if package:
            (tmp_path / root).mkdir()
            (tmp_path / root / "__init__.py").write_text("", encoding="utf-8")
            (tmp_path / root / "wsgi.py").write_text(source, encoding="utf-8")
            name = f"{root}.wsgi"
        else:
            (tmp_path / f"{root}.py").write_text(source, encoding="utf-8")
            name = root
        importlib.invalidate_caches()
        return name

    yield make
    for name in list(sys.modules):
        if name.split(".")[0] in roots:
            del sys.modules[name]


def load_error(spec: str) -> str:
    with pytest.raises(AppLoadError) as info:
        load_app(spec)
    return str(info.value)


# --- finding the application object ---------------------------------------------------------


def test_module_colon_name(make_module: MakeModule) -> None:
    name = make_module(WSGI_APP)
    app = load_app(f"{name}:app")
    assert app({}, None) == [b"x"]


def test_module_alone_prefers_application_then_app(make_module: MakeModule) -> None:
    both = make_module("def application(e, s):\n    return 'application'\napp = print\n")
    assert load_app(both)({}, None) == "application"
    only_app = make_module(WSGI_APP)
    assert load_app(only_app)({}, None) == [b"x"]


def test_module_alone_with_neither_name(make_module: MakeModule) -> None:
    name = make_module("x = 1\n")
    assert load_error(name) == f"Failed to find attribute 'application' or 'app' in {name!r}."


def test_missing_attribute(make_module: MakeModule) -> None:
    name = make_module("x = 1\n")
    assert load_error(f"{name}:app") == f"Failed to find attribute 'app' in {name!r}."


def test_dotted_attribute_path(make_module: MakeModule) -> None:
    name = make_module(
        "class Holder:\n    @staticmethod\n    def app(e, s):\n        return 'held'\n\n"
        "holder = Holder()\n"
    )
    assert load_app(f"{name}:holder.app")({}, None) == "held"
    assert load_error(f"{name}:holder.nope") == (
        f"Failed to find attribute 'holder.nope' in {name!r}."
    )


def test_application_in_a_package(make_module: MakeModule) -> None:
    name = make_module(WSGI_APP, package=True)
    assert load_app(f"{name}:app")({}, None) == [b"x"]


def test_result_must_be_callable(make_module: MakeModule) -> None:
    name = make_module("app = 42\n")
    assert load_error(f"{name}:app") == (
        f"Application object 'app' in {name!r} must be callable, got int."
    )


# --- factories ------------------------------------------------------------------------------

FACTORY = """\
calls = []

def create(*args, **kwargs):
    calls.append((args, kwargs))
    def app(environ, start_response):
        return [repr((args, kwargs)).encode()]
    return app

def strict(name):
    return lambda e, s: name

def broken():
    raise ValueError("bad settings")

def nothing():
    return None

value = 3
"""


def test_factory_without_arguments(make_module: MakeModule) -> None:
    name = make_module(FACTORY)
    app = load_app(f"{name}:create()")
    assert app({}, None) == [b"((), {})"]


def test_factory_with_literal_arguments(make_module: MakeModule) -> None:
    name = make_module(FACTORY)
    app = load_app(f'{name}:create(1, "x", key=True, items=[1, (2, 3)], opt=None)')
    assert app({}, None) == [
        repr(((1, "x"), {"key": True, "items": [1, (2, 3)], "opt": None})).encode()
    ]


@pytest.mark.parametrize(
    "call",
    ["create(os.environ)", "create(x=print)", "create(1 + f())", "create(*args)", "create(**opts)"],
)
def test_factory_arguments_must_be_literals(make_module: MakeModule, call: str) -> None:
    name = make_module(FACTORY)
    message = load_error(f"{name}:{call}")
    assert message.startswith(f"Failed to parse the arguments of {call!r}")
    assert name not in sys.modules  # refused before importing anything


def test_factory_called_with_wrong_arguments(make_module: MakeModule) -> None:
    name = make_module(FACTORY)
    assert load_error(f"{name}:strict()") == (
        f"Failed to call factory 'strict()' in {name!r}: missing a required argument: 'name'."
    )
    assert load_app(f"{name}:strict('ok')")({}, None) == "ok"


def test_factory_errors_propagate_with_their_traceback(make_module: MakeModule) -> None:
    name = make_module(FACTORY)
    with pytest.raises(ValueError, match="bad settings"):
        load_app(f"{name}:broken()")


def test_factory_returning_none(make_module: MakeModule) -> None:
    name = make_module(FACTORY)
    assert load_error(f"{name}:nothing()") == (
        f"Factory 'nothing()' in {name!r} returned None, not an application."
    )


def test_calling_something_that_is_not_callable(make_module: MakeModule) -> None:
    name = make_module(FACTORY)
    assert load_error(f"{name}:value()") == (
        f"'value' in {name!r} is not callable, so it is no factory."
    )


# --- modules that cannot be imported ------------------------------------------------------


def test_missing_module() -> None:
    assert load_error("monoceros_no_such_module:app") == (
        "No module named 'monoceros_no_such_module'."
    )


def test_missing_parent_package() -> None:
    assert load_error("monoceros_no_such_pkg.wsgi:app") == (
        "No module named 'monoceros_no_such_pkg' (needed for 'monoceros_no_such_pkg.wsgi')."
    )


def test_file_name_instead_of_module_name_gets_a_hint(make_module: MakeModule) -> None:
    name = make_module(WSGI_APP)
    assert load_error(f"{name}.py:app") == (
        f"No module named '{name}.py'. Did you mean '{name}:app'?"
    )


def test_import_error_inside_the_app_propagates(make_module: MakeModule) -> None:
    name = make_module("import monoceros_missing_dependency\n" + WSGI_APP)
    with pytest.raises(ModuleNotFoundError) as info:
        load_app(f"{name}:app")
    assert not isinstance(info.value, AppLoadError)
    assert info.value.name == "monoceros_missing_dependency"


def test_other_errors_inside_the_app_propagate(make_module: MakeModule) -> None:
    name = make_module("raise RuntimeError('app is broken')\n")
    with pytest.raises(RuntimeError, match="app is broken"):
        load_app(f"{name}:app")


# --- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, message",
    [
        ("", "Invalid application spec '': expected module:name."),
        (":app", "Invalid application spec ':app': expected module:name."),
        ("mod:", "Missing an attribute name after ':' in 'mod:'."),
        ("mod:app(", "Failed to parse 'app(' as an attribute name or function call."),
        ("mod:1 + 2", "Failed to parse '1 + 2' as an attribute name or function call."),
        ("mod:apps[0]", "Failed to parse 'apps[0]' as an attribute name or function call."),
        ("mod:make()()", "Function reference must be a (dotted) name: 'make()()'."),
        ("my-app:app", "Invalid module name 'my-app' in 'my-app:app'."),
        (
            "src/app:app",
            "Invalid module name 'src/app' in 'src/app:app'. Use a dotted module "
            "name; --chdir or --pythonpath add directories.",
        ),
    ],
)
def test_malformed_specs(spec: str, message: str) -> None:
    with pytest.raises(AppLoadError) as info:
        parse_app_spec(spec)
    assert str(info.value) == message
    assert load_error(spec) == message


def test_parsed_spec_parts() -> None:
    spec = parse_app_spec(" pkg.mod:obj.make(1, key='v') ")
    assert (spec.module, spec.attrs, spec.args, spec.kwargs) == (
        "pkg.mod",
        ("obj", "make"),
        (1,),
        {"key": "v"},
    )
    assert spec.is_factory and spec.target == "obj.make(1, key='v')"
    plain = parse_app_spec("pkg.mod")
    assert plain.attrs is None and not plain.is_factory


# --- check_app_spec -------------------------------------------------------------------------


def test_check_app_spec_does_not_import_the_module(make_module: MakeModule) -> None:
    name = make_module("raise RuntimeError('must not be imported')\n")
    check_app_spec(f"{name}:app")
    assert name not in sys.modules


def test_check_app_spec_finds_package_modules(make_module: MakeModule) -> None:
    name = make_module(WSGI_APP, package=True)
    check_app_spec(f"{name}:app")
    assert name not in sys.modules


def test_check_app_spec_errors_match_load_app() -> None:
    for spec in ("monoceros_no_such_module:app", "monoceros_no_such_pkg.wsgi:app", "mod:1 + 2"):
        with pytest.raises(AppLoadError) as info:
            check_app_spec(spec)
        assert str(info.value) == load_error(spec)


def test_check_app_spec_accepts_already_imported_modules() -> None:
    check_app_spec("os:getcwd")
    check_app_spec("__main__:app")


# --- apply_paths ----------------------------------------------------------------------------


@pytest.fixture
def process_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """Restore the cwd, sys.path and the variables set below after the test."""
    monkeypatch.chdir(os.getcwd())
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in ("MONOCEROS_TEST_A", "MONOCEROS_TEST_B"):
        monkeypatch.setenv(name, "before")


def test_apply_paths(process_state: None, tmp_path: Path) -> None:
    site = tmp_path / "site"
    for directory in (site, site / "lib1", site / "lib2"):
        directory.mkdir()
    cfg = Config({})
    cfg.set("chdir", str(site))
    cfg.set("pythonpath", "lib1, lib2,")
    cfg.set("raw_env", ["MONOCEROS_TEST_A=1", "MONOCEROS_TEST_B=x=y"])
    apply_paths(cfg)
    assert os.getcwd() == str(site)
    assert sys.path[:3] == [str(site / "lib1"), str(site / "lib2"), str(site)]
    assert os.environ["MONOCEROS_TEST_A"] == "1"
    assert os.environ["MONOCEROS_TEST_B"] == "x=y"


def test_apply_paths_puts_the_cwd_on_sys_path_once(process_state: None, tmp_path: Path) -> None:
    os.chdir(tmp_path)
    sys.path[:] = [entry for entry in sys.path if entry not in ("", str(tmp_path))]
    apply_paths(Config({}))
    apply_paths(Config({}))
    assert sys.path.count(str(tmp_path)) == 1
    assert sys.path[0] == str(tmp_path)
