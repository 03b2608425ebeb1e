"""Finding and loading cookbooks: names, both APIs, groups, owners and broken modules."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import pytest

from libcluster.cookbook import CookbookBase
from libcluster.errors import ConfigError
from libcluster.runner import discovery


@pytest.mark.parametrize(("given", "expected"), [
    ("sre.ganeti.makevm", "sre.ganeti.makevm"),
    ("sre/ganeti/makevm.py", "sre.ganeti.makevm"),
    ("sre/ganeti/reboot-vm", "sre.ganeti.reboot-vm"),
    ("cookbooks/sre/ganeti/makevm.py", "sre.ganeti.makevm"),
    ("/srv/tree/cookbooks/sre/ganeti/makevm.py", "sre.ganeti.makevm"),
    ("sre.ganeti.", "sre.ganeti"),
])
def test_normalize_accepts_dotted_and_path_syntax(given: str, expected: str) -> None:
    assert discovery.normalize(given) == expected


@pytest.mark.parametrize(("name", "kind", "path"), [
    ("demo.hello", "module", "demo/hello.py"),
    ("demo.reboot-vm", "module", "demo/reboot-vm.py"),
    ("demo.multiple.CookbookA", "class", "demo/multiple.py"),
    ("demo.ganeti", "group", "demo/ganeti"),
    ("top", "module", "top.py"),
])
def test_find_locates_modules_classes_and_groups(name: str, kind: str, path: str, tree: Path) -> None:
    found = discovery.find([tree], name)
    assert (found.kind, found.path) == (kind, tree / "cookbooks" / path)


@pytest.mark.parametrize("name", ["demo.nothing", "", "demo..hello", "broken._helper", "demo.hello; rm"])
def test_find_refuses_unknown_and_invalid_names(name: str, tree: Path) -> None:
    with pytest.raises(discovery.CookbookNotFound):
        discovery.find([tree], name)


def test_class_api_cookbook_loads_with_group_owner(tree: Path) -> None:
    loaded = discovery.load([tree], "demo/ganeti/makevm.py")
    assert loaded.name == "demo.ganeti.makevm"
    assert loaded.cls.__name__ == "MakeVM"
    assert loaded.owner_team == "Infrastructure Foundations"


def test_module_api_cookbook_is_converted_to_the_class_api(tree: Path) -> None:
    loaded = discovery.load([tree], "demo.module_api")
    assert issubclass(loaded.cls, CookbookBase)
    cookbook = loaded.cls(ctx=SimpleNamespace(dry_run=True))  # type: ignore[arg-type]
    assert cookbook.title == "Run through the module API"
    args = cookbook.argument_parser().parse_args(["--exit-code", "4"])
    runner = cookbook.get_runner(args)
    assert (runner.max_concurrency, runner.lock_ttl, runner.run()) == (3, 60, 4)
    assert loaded.owner_team == "Demo Team"


def test_module_api_without_parser_gets_the_default_one_and_its_docstring_title(tree: Path) -> None:
    loaded = discovery.load([tree], "demo.reboot-vm")
    cookbook = loaded.cls(ctx=None)  # type: ignore[arg-type]
    assert isinstance(cookbook.argument_parser(), argparse.ArgumentParser)
    assert cookbook.title.startswith("Reboot a VM")
    runner = cookbook.get_runner(argparse.Namespace())
    assert (runner.max_concurrency, runner.lock_ttl) == (20, None)


def test_several_classes_are_named_module_dot_class(tree: Path) -> None:
    with pytest.raises(discovery.CookbookNotFound, match=r"demo\.multiple\.CookbookA, demo\.multiple\.CookbookB"):
        discovery.load([tree], "demo.multiple")
    first = discovery.load([tree], "demo.multiple.CookbookA")
    second = discovery.load([tree], "demo.multiple.CookbookB")
    assert (first.name, first.owner_team) == ("demo.multiple.CookbookA", "Team A")
    assert (second.name, second.owner_team) == ("demo.multiple.CookbookB", "Demo Team")
    with pytest.raises(discovery.CookbookNotFound, match="no cookbook class CookbookC"):
        discovery.load([tree], "demo.multiple.CookbookC")


def test_group_is_not_a_cookbook(tree: Path) -> None:
    with pytest.raises(discovery.CookbookNotFound, match="is a group"):
        discovery.load([tree], "demo.ganeti")


@pytest.mark.parametrize(("name", "error", "message"), [
    ("broken.syntax_error", discovery.CookbookLoadError, "SyntaxError"),
    ("broken.import_error", discovery.CookbookLoadError, "No module named 'libcluster.does_not_exist'"),
    ("broken.not_a_cookbook", discovery.CookbookNotFound, "neither a CookbookBase class nor run()"),
])
def test_broken_modules_are_reported_with_the_reason(name: str, error: type[Exception], message: str,
                                                     tree: Path) -> None:
    with pytest.raises(error) as raised:
        discovery.load([tree], name)
    assert message in str(raised.value)


def test_a_tree_with_init_at_its_top_is_refused(tmp_path: Path) -> None:
    (tmp_path / "cookbooks").mkdir()
    (tmp_path / "cookbooks" / "__init__.py").write_text("")
    with pytest.raises(ConfigError, match=r"must not contain __init__\.py"):
        discovery.tree_roots([tmp_path])


def test_trees_of_several_base_dirs_merge(tmp_path: Path, tree: Path) -> None:
    (tmp_path / "cookbooks" / "extra").mkdir(parents=True)
    (tmp_path / "cookbooks" / "extra" / "more.py").write_text('"""Extra cookbook from a second tree."""\n\n'
                                                             "def run(args, ctx):\n    return 7\n")
    loaded = discovery.load([tree, tmp_path], "extra.more")
    assert loaded.cls(ctx=None).get_runner(argparse.Namespace()).run() == 7  # type: ignore[arg-type]
    assert discovery.load([tree, tmp_path], "demo.hello").path == tree / "cookbooks" / "demo" / "hello.py"
