"""`cookbook -l`: the static catalog agrees with the loaded cookbooks, renders as a tree, filters, and caches."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from libcluster.runner import catalog, declarations, discovery, listing


def test_static_titles_and_owners_match_the_loaded_cookbooks(tree: Path) -> None:
    root = catalog.scan([tree])
    checked = 0
    for node in root.cookbooks():
        if node.error or node.name == "broken.import_error":  # listed, but only an import reveals the error
            continue
        loaded = discovery.load([tree], node.name)
        title = loaded.cls(ctx=None).title  # type: ignore[arg-type]
        assert (node.title, node.owner) == (title, loaded.owner_team), node.name
        checked += 1
    assert checked >= 10


def test_groups_take_title_and_owner_from_init(tree: Path) -> None:
    root = catalog.scan([tree])
    demo, ganeti = root.find("demo"), root.find("demo.ganeti")
    assert demo is not None and ganeti is not None
    assert (demo.title, demo.owner) == ("Demo cookbooks of the runner tests", "Demo Team")
    assert (ganeti.title, ganeti.owner) == ("Ganeti demo cookbooks", "Infrastructure Foundations")


def test_private_and_non_cookbook_modules_are_not_listed_but_broken_ones_are(tree: Path) -> None:
    names = {node.name for node in catalog.scan([tree]).walk()}
    assert "broken._helper" not in names
    assert "broken.not_a_cookbook" not in names
    broken = catalog.scan([tree]).find("broken.syntax_error")
    assert broken is not None and "SyntaxError" in broken.error


def test_render_tree_of_a_prefix() -> None:
    root = catalog.Node("", title="cookbooks", group=True)
    group = root.child("sre", group=True)
    ganeti = group.child("sre.ganeti", group=True)
    ganeti.title, ganeti.owner = "Ganeti Cookbooks", "Infra"
    for name, title in (("sre.ganeti.makevm", "Create a VM"), ("sre.ganeti.reboot-vm", "Reboot a VM")):
        ganeti.children[name] = catalog.Node(name, title=title, owner="Infra")
    group.children["sre.dns"] = catalog.Node("sre.dns", title="DNS", owner="unowned")
    assert listing.render(root) == [
        "cookbooks",
        "`-- sre",
        "    |-- sre.dns",
        "    `-- sre.ganeti",
        "        |-- sre.ganeti.makevm",
        "        `-- sre.ganeti.reboot-vm",
    ]
    assert listing.render(root, "sre.ganeti.re", verbose=True) == [
        "cookbooks",
        "`-- sre [unowned]",
        "    `-- sre.ganeti: Ganeti Cookbooks [Infra]",
        "        `-- sre.ganeti.reboot-vm: Reboot a VM [Infra]",
    ]
    assert listing.render(root, "sre.nothing") == []


def test_cli_list_prints_the_tree_and_titles_with_verbose(cookbook: Callable[..., int],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cookbook("-l", "demo") == 0
    plain = capsys.readouterr().out.splitlines()
    assert plain[0] == "cookbooks"
    assert "    |   `-- demo.ganeti.makevm" in plain
    assert "    |-- demo.multiple.CookbookA" in plain
    assert "    `-- demo.reboot-vm" in plain
    assert not any(line.endswith(("broken", "top")) for line in plain)
    assert cookbook("-l", "-v", "demo.ganeti") == 0
    assert "        `-- demo.ganeti.makevm: Create a VM (demo) [Infrastructure Foundations]" in \
        capsys.readouterr().out.splitlines()


def test_cli_list_of_an_unknown_prefix_fails(cookbook: Callable[..., int], capsys: pytest.CaptureFixture[str]) -> None:
    assert cookbook("-l", "nope") == 98
    assert "No cookbook matches 'nope'" in capsys.readouterr().err


def test_cache_is_reused_until_a_file_changes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    group = tmp_path / "cookbooks" / "grp"
    group.mkdir(parents=True)
    module = group / "one.py"
    module.write_text('"""First title."""\n\ndef run(args, ctx):\n    return 0\n')
    cache = tmp_path / "cache.json"
    reads: list[str] = []
    real = declarations.read_file
    monkeypatch.setattr(declarations, "read_file", lambda path: reads.append(path.name) or real(path))

    assert catalog.scan([tmp_path], cache).find("grp.one").title == "First title."  # type: ignore[union-attr]
    assert reads == ["one.py"]
    assert catalog.scan([tmp_path], cache).find("grp.one").title == "First title."  # type: ignore[union-attr]
    assert reads == ["one.py"]
    module.write_text('"""Second title, longer."""\n\ndef run(args, ctx):\n    return 0\n')
    os.utime(module, ns=(module.stat().st_atime_ns, module.stat().st_mtime_ns + 1_000_000))
    assert catalog.scan([tmp_path], cache).find("grp.one").title == "Second title, longer."  # type: ignore[union-attr]
    assert reads == ["one.py", "one.py"]


def test_a_broken_cache_is_rebuilt(tmp_path: Path, tree: Path) -> None:
    cache = tmp_path / "cache.json"
    cache.write_text("{not json")
    assert catalog.scan([tree], cache).find("demo.hello") is not None
    assert catalog.FileCache(cache).entries
