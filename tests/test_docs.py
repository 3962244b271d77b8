"""The documentation says what the code does.

* docs/rfc-map.md: every module named exists and every name in backticks
  in the functions column resolves in one of the row's modules.
* The README opens with the two set-up commands of CONTRACT.md.
* Files shown inline in the docs (systemd units, the BIRD configuration)
  are the files shipped in examples/, byte for byte.
* Relative links in README.md and docs/*.md point at files that exist.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _rfc_map_rows() -> list[tuple[str, list[str], list[str]]]:
    rows = []
    for line in (DOCS / "rfc-map.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[2].startswith("`"):
            continue
        modules = re.findall(r"`([\w/]+\.py)`", cells[2])
        names = re.findall(r"`([\w.]+)`", cells[3])
        rows.append((cells[0], modules, names))
    return rows


def _resolve(modules: list[str], name: str) -> bool:
    for path in modules:
        obj: object = importlib.import_module(path[:-3].replace("/", "."))
        try:
            for part in name.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        return True
    return False


def test_rfc_map_is_not_empty():
    rows = _rfc_map_rows()
    assert len(rows) > 80
    sections = " ".join(r[0] for r in rows)
    for rfc in ("RFC 4380", "RFC 5991", "RFC 6081", "RFC 8200", "RFC 4443", "RFC 5722", "RFC 8201", "RFC 9293",
                "RFC 7323", "RFC 2018", "RFC 6675", "RFC 5681", "RFC 6298", "RFC 5961", "RFC 1928", "RFC 1929"):
        assert rfc in sections, rfc


@pytest.mark.parametrize("section,modules,names", _rfc_map_rows(), ids=lambda v: v if isinstance(v, str) else None)
def test_rfc_map_names_exist(section, modules, names):
    for path in modules:
        assert (ROOT / path).is_file(), f"{section}: no {path}"
    missing = [n for n in names if not _resolve(modules, n)]
    assert not missing, f"{section}: not found in {modules}: {missing}"


def test_readme_starts_with_the_contract_commands():
    blocks = re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert blocks[0].strip() == "pip install . && teredo-proxy demo"
    assert blocks[1].strip() == "pip install -e '.[test]' && python3 -m pytest"
    assert "pip install -e '.[test]' && python3 -m pytest" in (ROOT / ".ci" / "run").read_text()


def _fenced(path: Path) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", path.read_text(), re.S)


@pytest.mark.parametrize("doc,example", [
    ("operating.md", "systemd/teredo-server.service"),
    ("operating.md", "systemd/teredo-relay.service"),
    ("operating.md", "systemd/teredo-client.service"),
    ("scaling.md", "anycast/bird-bgp.conf"),
])
def test_inline_files_match_the_examples(doc, example):
    text = (ROOT / "examples" / example).read_text()
    assert text in _fenced(DOCS / doc), f"docs/{doc} shows another version of examples/{example}"


@pytest.mark.parametrize("doc", ["README.md", *sorted(f"docs/{p.name}" for p in DOCS.glob("*.md"))])
def test_relative_links_resolve(doc):
    path = ROOT / doc
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", path.read_text()):
        if "://" in target:
            continue
        assert (path.parent / target).exists(), f"{doc}: broken link {target}"
