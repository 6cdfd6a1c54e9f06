"""Generate the settings reference page ``docs/settings.md`` from the settings table.

``python -m monoceros.docs_settings`` prints the page; ``--write`` writes it to
``docs/settings.md`` of the source tree (or to the path given after ``--write``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from monoceros.config import SETTINGS, Setting

PAGE_PATH = Path(__file__).resolve().parent.parent / "docs" / "settings.md"
"""Where ``--write`` puts the page by default: ``docs/settings.md`` next to the package."""

_HEADER = """\
<!-- Generated from monoceros/config.py by `python -m monoceros.docs_settings --write`.
     Do not edit by hand: a unit test fails when this page is stale. -->

# Settings reference

Every setting below can be given in the config file as `name = value` (see
[Configuration](configuration.md)). Settings with command-line flags can also be given on the
command line or in `MONOCEROS_CMD_ARGS`. Names, flags and defaults are gunicorn's, so an existing
`gunicorn.conf.py` works with `monoceros -c gunicorn.conf.py`.

Precedence, lowest first: defaults, config file, `MONOCEROS_CMD_ARGS`, command line.
"""


_CLI_NOTES = {"wsgi_app": "the positional `APP_MODULE` argument"}


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _flags(setting: Setting) -> str:
    if setting.action in ("store", "append"):
        metavar = setting.metavar or setting.name.upper()
        if setting.nargs == "?":
            metavar = f"[{metavar}]"
        return ", ".join(_code(f"{flag} {metavar}") for flag in setting.flags)
    return ", ".join(_code(flag) for flag in setting.flags)


def _default(setting: Setting) -> str:
    if setting.default_doc is not None:
        return setting.default_doc
    return _code(repr(setting.default))


def _render_setting(setting: Setting) -> list[str]:
    lines = [f"### `{setting.name}`", ""]
    if setting.params is not None:
        lines.append(f"- Signature: `{setting.name}({', '.join(setting.params)})`")
    if setting.flags:
        lines.append(f"- Command line: {_flags(setting)}")
    else:
        lines.append(f"- Command line: {_CLI_NOTES.get(setting.name, 'none (config file only)')}")
    lines.append(f"- Default: {_default(setting)}")
    if setting.action == "append":
        lines.append("- Repeatable on the command line; a list in the config file.")
    lines += ["", setting.doc, ""]
    return lines


def render() -> str:
    """The whole settings reference page, as Markdown."""
    sections: dict[str, list[Setting]] = {}
    for setting in SETTINGS:
        sections.setdefault(setting.section, []).append(setting)
    lines = [_HEADER]
    for section in sections:
        anchor = section.lower().replace(" ", "-")
        names = ", ".join(f"[`{s.name}`](#{s.name})" for s in sections[section])
        lines.append(f"- [{section}](#{anchor}): {names}")
    lines.append("")
    for section, members in sections.items():
        lines += [f"## {section}", ""]
        for setting in members:
            lines += _render_setting(setting)
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print the page, or write it with ``--write [PATH]``; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m monoceros.docs_settings", description="Generate docs/settings.md."
    )
    parser.add_argument(
        "--write",
        nargs="?",
        const=str(PAGE_PATH),
        default=None,
        metavar="PATH",
        help=f"write the page (default path: {PAGE_PATH.name})",
    )
    args = parser.parse_args(argv)
    page = render()
    if args.write is None:
        sys.stdout.write(page)
    else:
        Path(args.write).write_text(page, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
