"""``--check-config``'s look at the server hooks, without calling any of them.

Each hook's bytecode is read for attribute reads on its ``server`` and ``worker`` parameters
(``server.address``, ``worker.tmp``). A name that monoceros's :class:`~monoceros.arbiter.Arbiter`
or the configured worker class does not have would raise AttributeError when the hook runs, so
it is reported with the hook's name and line. What the check cannot see it leaves alone: reads
through another variable, in nested functions, names read by ``getattr``/``hasattr``, hooks that
catch AttributeError, and a parameter the hook assigns to. Attributes a hook sets itself
(``server.started = time.time()`` in ``on_starting``) count as present in every hook.

The names allowed come from the classes themselves: their class-level annotations (the
attributes ``__init__`` sets), their methods and properties.
"""

from __future__ import annotations

import dis
import inspect
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import Config

__all__ = ["AttributeUse", "Finding", "attribute_uses", "check_hooks", "hook_attributes"]

#: hook parameters whose objects the check knows
CHECKED_PARAMS = ("server", "worker")
_NO_OPS = frozenset({"CACHE", "EXTENDED_ARG", "NOP"})


@dataclass(frozen=True)
class AttributeUse:
    """One ``param.name`` in a hook's code: read, or set (``store``)."""

    param: str
    name: str
    line: int
    store: bool = False


@dataclass(frozen=True)
class Finding:
    """A hook reads an attribute its object does not have."""

    hook: str
    use: AttributeUse
    where: str
    owner: str

    def __str__(self) -> str:
        return (
            f"{self.where}:{self.use.line}: the {self.hook} hook reads "
            f"{self.use.param}.{self.use.name}, which monoceros's {self.owner} does not have"
        )


def hook_attributes(cls: type) -> frozenset[str]:
    """Every public name an instance of ``cls`` has: annotated attributes, methods, properties."""
    names = {name for name in dir(cls) if not name.startswith("_")}
    for klass in cls.__mro__:
        names.update(name for name in inspect.get_annotations(klass) if not name.startswith("_"))
    return frozenset(names)


def _code_and_params(func: Callable[..., Any]) -> tuple[types.CodeType, tuple[str, ...]] | None:
    """The code of a plain (or functools.wraps-wrapped) function and its positional names."""
    target = inspect.unwrap(func)
    if not isinstance(target, types.FunctionType):
        return None  # a callable object or a builtin: nothing to read
    code = target.__code__
    return code, code.co_varnames[: code.co_argcount]


def _line_of(instr: dis.Instruction, current: int) -> int:
    positions = getattr(instr, "positions", None)
    if positions is not None and positions.lineno is not None:
        return int(positions.lineno)
    starts = instr.starts_line
    if isinstance(starts, int) and not isinstance(starts, bool):  # Python 3.10
        return starts
    return current


def _names(argval: Any) -> tuple[str, ...]:
    return tuple(argval) if isinstance(argval, tuple) else (str(argval),)


def _walk(code: types.CodeType, roles: dict[str, str]) -> Iterator[AttributeUse | str]:
    """Yield the attribute uses on the variables in ``roles`` (name -> role) in ``code``, and
    the name of every such variable the code assigns to."""
    last: str | None = None
    line = code.co_firstlineno
    for instr in dis.get_instructions(code):
        line = _line_of(instr, line)
        op = instr.opname
        if op in _NO_OPS:
            continue
        loaded = last
        last = None
        if op.startswith(("STORE_FAST", "DELETE_FAST", "STORE_DEREF", "DELETE_DEREF")):
            names = _names(instr.argval)
            stored = names[:1] if op == "STORE_FAST_LOAD_FAST" else names
            yield from (name for name in stored if name in roles)
            if op == "STORE_FAST_LOAD_FAST":
                last = names[-1]
        elif op.startswith("LOAD_FAST") or op == "LOAD_DEREF":
            last = _names(instr.argval)[-1]
        elif loaded in roles and op in ("LOAD_ATTR", "LOAD_METHOD", "STORE_ATTR"):
            yield AttributeUse(roles[loaded], str(instr.argval), line, op == "STORE_ATTR")


def attribute_uses(func: Callable[..., Any], params: tuple[str, ...]) -> list[AttributeUse]:
    """The ``server.X``/``worker.X`` uses in hook ``func`` whose parameters mean ``params``
    (the hook's own parameter names may differ: they are matched by position)."""
    found = _code_and_params(func)
    if found is None:
        return []
    code, positional = found
    if "AttributeError" in code.co_names:
        return []  # the hook handles a missing attribute itself
    count = min(len(positional), len(params))
    pairs = zip(positional[:count], params[:count], strict=True)
    roles = {name: role for name, role in pairs if role in CHECKED_PARAMS}
    uses: list[AttributeUse] = []
    reassigned: set[str] = set()
    for item in _walk(code, roles):
        if isinstance(item, str):
            reassigned.add(roles[item])
        else:
            uses.append(item)
    guarded = {c for c in code.co_consts if isinstance(c, str)}
    if not {"getattr", "hasattr"} & set(code.co_names):
        guarded = set()
    return [
        use
        for use in uses
        if use.param not in reassigned and (use.store or use.name not in guarded)
    ]


def _where(func: Callable[..., Any]) -> str:
    found = _code_and_params(func)
    return found[0].co_filename if found else "<hook>"


def check_hooks(cfg: Config, owners: dict[str, type]) -> list[Finding]:
    """Reads of attributes that the objects hooks receive do not have, in every hook ``cfg``
    sets; ``owners`` maps ``"server"``/``"worker"`` to the class of that object."""
    from .config import SETTINGS

    hooks = [(s.name, s.params or ()) for s in SETTINGS if s.is_hook and cfg.hook_is_set(s.name)]
    uses = {name: attribute_uses(getattr(cfg, name), params) for name, params in hooks}
    allowed = {role: set(hook_attributes(cls)) for role, cls in owners.items()}
    for found in uses.values():
        for use in found:
            if use.store:
                allowed[use.param].add(use.name)
    findings = []
    for name, found in uses.items():
        for use in found:
            if use.store or use.name.startswith("_") or use.name in allowed[use.param]:
                continue
            owner = owners[use.param].__name__
            findings.append(Finding(name, use, _where(getattr(cfg, name)), owner))
    return findings
