"""Registries find their plug-ins by module name on the first lookup; ``lazy`` entries import on the first call."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from llmvem.errors import RegistryError
from llmvem.registry import lazy


def _modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, plugin_body: str) -> None:
    """``reg_home`` holds a registry of parts whose plug-in ``reg_plugin`` imports ``reg_home`` (never the reverse)."""
    (tmp_path / "reg_home.py").write_text(
        "from llmvem.registry import Registry\nPARTS = Registry('part', plugins=['reg_plugin'])\n"
        "PARTS.register('own')(1)\n"
    )
    (tmp_path / "reg_plugin.py").write_text(plugin_body)
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("reg_home", "reg_plugin"):
        monkeypatch.delitem(sys.modules, name, raising=False)


def test_plugins_register_on_the_first_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _modules(tmp_path, monkeypatch, "from reg_home import PARTS\nPARTS.register('extra')(2)\n")
    import reg_home  # type: ignore[import-not-found]

    assert "reg_plugin" not in sys.modules  # importing the registry imports no plug-in
    assert reg_home.PARTS.get("extra") == 2 and "reg_plugin" in sys.modules
    assert reg_home.PARTS.names() == ["extra", "own"] and len(reg_home.PARTS) == 2


def test_a_miss_lists_the_plugins_entries_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _modules(tmp_path, monkeypatch, "from reg_home import PARTS\nPARTS.register('extra')(2)\n")
    import reg_home

    with pytest.raises(RegistryError, match="unknown part 'nope'; known: extra, own"):
        reg_home.PARTS.get("nope")


def test_a_plugin_that_fails_to_import_fails_every_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _modules(tmp_path, monkeypatch, "raise ImportError('needs a package that is not installed')\n")
    import reg_home

    for _ in range(2):  # tried again, never half-loaded silently
        with pytest.raises(ImportError, match="not installed"):
            reg_home.PARTS.get("own")


def test_lazy_imports_its_module_on_the_first_call(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "lazy_target.py").write_text("def twice(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "lazy_target", raising=False)
    twice = lazy("lazy_target", "twice")
    assert "lazy_target" not in sys.modules and twice.__name__ == "twice"
    assert twice(21) == 42 and "lazy_target" in sys.modules
