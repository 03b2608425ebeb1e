"""``cookbook -l``: the tree of cookbooks as ASCII art, optionally filtered by a name prefix, titles with -v."""

from __future__ import annotations

from libcluster.runner.catalog import Node


def _label(node: Node, verbose: bool) -> str:
    if not verbose:
        return node.name
    title = f"{node.title} ({node.error})" if node.error else node.title
    return f"{node.name}: {title} [{node.owner}]" if title else f"{node.name} [{node.owner}]"


def _keep(node: Node, prefix: str) -> bool:
    return node.name.startswith(prefix) or any(_keep(child, prefix) for child in node.children.values())


def render(root: Node, prefix: str = "", *, verbose: bool = False) -> list[str]:
    """Lines of the tree below root whose names start with prefix (and their groups); [] if none match."""
    if not any(node.name.startswith(prefix) for node in root.walk() if node.name):
        return []
    lines = [root.title or "cookbooks"]

    def add(node: Node, indent: str) -> None:
        children = [node.children[name] for name in sorted(node.children) if _keep(node.children[name], prefix)]
        for index, child in enumerate(children):
            last = index == len(children) - 1
            lines.append(f"{indent}{'`-- ' if last else '|-- '}{_label(child, verbose)}")
            add(child, indent + ("    " if last else "|   "))

    add(root, "")
    return lines
