"""The layout README and docs/architecture.md describe is the layout on disk, and it is enforced."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("auth", "admission", "cache", "routing", "resilience", "providers", "metering")
PATH = re.compile(r"(?<![\w/.])((?:proxy|mockupstream|tests|loadtests)/[\w./-]*)")


def named_paths(doc: Path) -> set[str]:
    return {m.rstrip(".") for m in PATH.findall(doc.read_text())}


@pytest.mark.parametrize("doc", ["README.md", "docs/architecture.md"])
def test_every_package_and_module_named_exists(doc: str) -> None:
    names = named_paths(ROOT / doc)
    assert len(names) > 10, names  # the layout is actually described there
    missing = sorted(n for n in names if not (ROOT / n).exists())
    assert not missing, f"{doc} names paths that do not exist: {missing}"


def test_one_package_per_stage_and_the_docs_name_each() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text()
    for stage in STAGES:
        assert (ROOT / "proxy" / stage / "__init__.py").is_file(), stage
        assert f"proxy/{stage}/" in text, stage


def test_the_layers_contract_holds() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


def test_no_import_cycles_between_subpackages() -> None:
    """grimp's graph (as import-linter builds it; annotation-only imports left out, as in the contract)."""
    import grimp

    graph = grimp.build_graph("proxy", exclude_type_checking_imports=True)
    packages = sorted(m for m in graph.modules if m.count(".") == 1 and graph.find_children(m))
    assert "proxy.providers" in packages and "proxy.config" in packages, packages
    cycles = [(a, b) for a in packages for b in packages if a < b
              and graph.chain_exists(importer=a, imported=b, as_packages=True)
              and graph.chain_exists(importer=b, imported=a, as_packages=True)]
    assert cycles == []
