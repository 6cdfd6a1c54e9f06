"""The settings reference page is generated from the table and must not go stale."""

from __future__ import annotations

from pathlib import Path

import pytest

from monoceros.config import SETTINGS
from monoceros.docs_settings import PAGE_PATH, main, render

COMMITTED_PAGE = Path(__file__).resolve().parents[2] / "docs" / "settings.md"


def test_committed_page_is_up_to_date() -> None:
    assert PAGE_PATH == COMMITTED_PAGE
    assert COMMITTED_PAGE.read_text(encoding="utf-8") == render(), (
        "docs/settings.md is stale: run `python -m monoceros.docs_settings --write`"
    )


def test_page_documents_every_setting_and_flag() -> None:
    page = render()
    for setting in SETTINGS:
        assert f"### `{setting.name}`" in page
        assert setting.doc in page
        for flag in setting.flags:
            assert f"`{flag}" in page, flag


def test_hooks_show_their_signature() -> None:
    page = render()
    assert "- Signature: `post_request(worker, req, environ, resp)`" in page
    assert "- Signature: `nworkers_changed(server, new_value, old_value)`" in page


def test_dynamic_defaults_are_described_not_evaluated() -> None:
    page = render()
    assert "`$WEB_CONCURRENCY` when set, else `1`" in page
    chdir_section = page.split("### `chdir`", 1)[1].split("###", 1)[0]
    assert "- Default: the current directory\n" in chdir_section


def test_main_prints_or_writes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out == render()
    target = tmp_path / "settings.md"
    assert main(["--write", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == render()
