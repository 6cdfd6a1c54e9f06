"""The suite's own safety nets are in place: a hung test fails after a per-test timeout."""

from __future__ import annotations

import pytest


def test_a_hang_fails_fast_with_a_traceback(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.pluginmanager.hasplugin("timeout"), "pip install -e '.[test]'"
    assert 0 < float(pytestconfig.getini("timeout")) <= 300
    # SIGALRM raises inside the test: its traceback is shown and fixtures still tear down
    assert pytestconfig.getini("timeout_method") == "signal"
