"""Imports inside the package flow one way, as README.md's "imports flow one way" paragraph says.

Every module under ``monoceros/`` is parsed with :mod:`ast` (nothing is imported), each import
of a monoceros module is resolved (relative ones too, and imports inside functions), and an
import that points up or sideways in :data:`LAYERS` fails the test. A module is placed by its
subpackage (``monoceros/workers/*`` are all ``workers``), so a new module in a known folder needs
no edit here; a new top-level module or folder must be placed in :data:`LAYERS` (and in the
README's paragraph) before the test passes.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "monoceros"

#: top to bottom; a group may import its own modules and groups of LOWER layers only
LAYERS: list[tuple[str, ...]] = [
    ("__main__",),  # python -m monoceros
    ("cli", "docs_settings", "top"),  # the command lines
    ("arbiter", "hook_check"),  # the master, and what --check-config runs beside it
    ("recycle",),  # when the master replaces a worker for its memory or age (reads RSS)
    # one worker class per I/O model; the master's stats views and statsd sender
    ("workers", "stats_render", "statsd"),
    ("wsgi", "asgi"),  # the application interfaces: peers, neither imports the other
    ("app", "config_loader", "listeners", "logs", "heartbeat", "pidfile", "reloader", "tls"),
    # small leaf helpers; the stats listener and the workers' shared counting blocks
    (
        "access_log",
        "addresses",
        "log_config",
        "proctitle",
        "socket_waits",
        "stats_server",
        "worker_metrics",
    ),
    ("protocols",),  # sans-IO parsing: see PURE
    ("config",),
    ("gunicorn_only", "__init__"),  # config's table of gunicorn-only settings; the version
    ("_compiled",),  # which modules have a compiled twin; the switch to their source
]
#: groups that import nothing of monoceros but their own modules, whatever their layer
PURE = {"protocols", "gunicorn_only", "_compiled"}
#: sideways imports that exist today, each with its reason; the test fails once one is gone
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {}


@dataclass(frozen=True)
class Import:
    """One import of a monoceros module: who imports what, and on which line."""

    importer: str
    imported: str
    line: int


def module_name(path: Path, root: Path) -> str:
    """``monoceros.workers.sync`` for ``ROOT/monoceros/workers/sync.py``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def group_of(module: str) -> str:
    """The layer group of a module: its subpackage, else its own name (``__init__`` for the
    package itself)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base.pop()
    if node.level > 1:
        base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path, root: Path, package: str = "monoceros") -> list[Import]:
    """Every import of a ``package`` module in the file at ``path`` (``root`` holds the
    package); ``from X import name`` counts as an import of ``X.name`` when that is a module."""
    importer = module_name(path, root)
    is_package = path.name == "__init__.py"
    out: list[Import] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(importer, is_package, node)
            for alias in node.names:
                sub = root.joinpath(*f"{base}.{alias.name}".split("."))
                is_module = sub.with_suffix(".py").is_file() or (sub / "__init__.py").is_file()
                targets.append(f"{base}.{alias.name}" if is_module else base)
        for target in targets:
            if target == package or target.startswith(package + "."):
                out.append(Import(importer, target, node.lineno))
    return out


def layer_of(group: str) -> int:
    """The index of ``group`` in :data:`LAYERS` (0 is the top); KeyError when unplaced."""
    for i, layer in enumerate(LAYERS):
        if group in layer:
            return i
    raise KeyError(group)


def violations(found: list[Import]) -> list[str]:
    """A readable line for every import that goes against :data:`LAYERS`."""
    out = []
    for imp in found:
        if (imp.importer, imp.imported) in KNOWN_EXCEPTIONS:
            continue
        src, dst = group_of(imp.importer), group_of(imp.imported)
        where = f"{imp.importer} (line {imp.line}) imports {imp.imported}"
        if src == dst:
            continue
        try:
            src_layer, dst_layer = layer_of(src), layer_of(dst)
        except KeyError as exc:
            out.append(f"{where}: place {exc.args[0]!r} in LAYERS and in README.md")
            continue
        if src in PURE:
            out.append(f"{where}: {src!r} imports nothing else from monoceros")
        elif dst_layer == src_layer:
            out.append(f"{where}: {src!r} and {dst!r} are peers in one layer")
        elif dst_layer < src_layer:
            out.append(f"{where}: {dst!r} is above {src!r}")
    return out


def package_imports() -> list[Import]:
    return [imp for path in sorted(PACKAGE.rglob("*.py")) for imp in imports_of(path, REPO)]


def test_imports_flow_one_way() -> None:
    found = package_imports()
    assert len(found) > 50, "the checker no longer sees the package's imports"
    assert violations(found) == []


def test_every_module_is_placed() -> None:
    unplaced = set()
    for path in PACKAGE.rglob("*.py"):
        group = group_of(module_name(path, REPO))
        try:
            layer_of(group)
        except KeyError:
            unplaced.add(group)
    assert unplaced == set(), "place these in LAYERS and in README.md's import paragraph"


def test_known_exceptions_still_exist() -> None:
    found = {(imp.importer, imp.imported) for imp in package_imports()}
    stale = set(KNOWN_EXCEPTIONS) - found
    assert stale == set(), "these imports are gone: remove them from KNOWN_EXCEPTIONS"


def test_readme_names_every_group() -> None:
    text = (REPO / "README.md").read_text()
    match = re.search(r"Inside the package, imports flow one way.*?\n\n", text, re.S)
    assert match, "README.md lost its 'imports flow one way' paragraph"
    named = set(re.findall(r"`([a-z_]+)/?`", match.group(0)))
    groups = {g for layer in LAYERS for g in layer} - {"__init__", "__main__"}
    assert groups - named == set(), "README.md's import paragraph misses these"


# ----------------------------------------------------------------------------- the checker itself


def _tree(tmp_path: Path, files: dict[str, str]) -> list[Import]:
    for name, text in files.items():
        p = tmp_path.joinpath(*name.split("/"))
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return [
        imp
        for p in sorted((tmp_path / "monoceros").rglob("*.py"))
        for imp in imports_of(p, tmp_path)
    ]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        # a protocol parser reaching up into the WSGI glue
        (
            {"monoceros/protocols/new_parser.py": "from ..wsgi.body import Input\n"},
            [
                "monoceros.protocols.new_parser (line 1) imports monoceros.wsgi.body: "
                "'protocols' imports nothing else from monoceros"
            ],
        ),
        # wsgi reaching up into a worker, inside a function and absolutely
        (
            {"monoceros/wsgi/x.py": "def f():\n    import monoceros.workers.sync\n"},
            ["monoceros.wsgi.x (line 2) imports monoceros.workers.sync: 'workers' is above 'wsgi'"],
        ),
        # config importing anything but its own table
        (
            {"monoceros/config.py": "from monoceros.app import load_app\n"},
            ["monoceros.config (line 1) imports monoceros.app: 'app' is above 'config'"],
        ),
        # the peers
        (
            {"monoceros/wsgi/y.py": "from ..asgi import scope\n"},
            [
                "monoceros.wsgi.y (line 1) imports monoceros.asgi: "
                "'wsgi' and 'asgi' are peers in one layer"
            ],
        ),
        # an unknown top-level module
        (
            {"monoceros/metrics.py": "from . import config\n", "monoceros/config.py": ""},
            [
                "monoceros.metrics (line 1) imports monoceros.config: place 'metrics' in LAYERS and in "
                "README.md"
            ],
        ),
    ],
)
def test_checker_fails_an_upward_import(
    tmp_path: Path, files: dict[str, str], expected: list[str]
) -> None:
    assert violations(_tree(tmp_path, files)) == expected


def test_checker_passes_downward_and_own_package_imports(tmp_path: Path) -> None:
    found = _tree(
        tmp_path,
        {
            "monoceros/__init__.py": "",
            "monoceros/config.py": "",
            "monoceros/protocols/__init__.py": "",
            "monoceros/protocols/new.py": "from . import errors\nfrom .errors import X\n",
            "monoceros/protocols/errors.py": "import os\n",
            "monoceros/workers/new_kind.py": (
                "from ..protocols.new import P\nfrom .. import config\nfrom monoceros import x\n"
            ),
            "monoceros/cli.py": "from monoceros.workers import new_kind\n",
        },
    )
    assert {(i.importer, i.imported) for i in found} == {
        ("monoceros.protocols.new", "monoceros.protocols.errors"),
        ("monoceros.workers.new_kind", "monoceros.protocols.new"),
        ("monoceros.workers.new_kind", "monoceros.config"),
        ("monoceros.workers.new_kind", "monoceros"),
        ("monoceros.cli", "monoceros.workers.new_kind"),
    }
    assert violations(found) == []
