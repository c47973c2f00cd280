"""YAML read safely and within bounds: PyYAML's safe loader (no Python tags) that also refuses
alias bombs and self-containing aliases, and the line of every key for error messages."""

from __future__ import annotations

from typing import Any

import yaml

Loc = tuple[str | int, ...]

MAX_RECIPE_BYTES = 2 ** 20
MAX_YAML_VALUES = 100_000  # values of a document once its aliases are expanded


class YamlTooBig(yaml.YAMLError):
    """A document whose aliases expand past MAX_YAML_VALUES values, or refer to themselves."""


def _expanded(root: yaml.Node | None) -> None:
    """Count the values ``root`` stands for with every alias expanded (each shared node counted
    once per use, computed once); raise YamlTooBig past the limit or on a cycle."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise YamlTooBig("an alias refers to the value that contains it")
        active.add(key)
        n = 1
        if isinstance(node, yaml.MappingNode):
            n += sum(size(k) + size(v) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            n += sum(size(v) for v in node.value)
        active.discard(key)
        if n > MAX_YAML_VALUES:
            raise YamlTooBig(f"aliases expand it past {MAX_YAML_VALUES:,} values")
        sizes[key] = n
        return n

    if root is not None:
        size(root)


class BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader (no Python tags) that refuses alias bombs and cyclic aliases."""

    def compose_document(self) -> yaml.Node | None:
        node = super().compose_document()
        _expanded(node)
        return node


def safe_yaml(text: str) -> Any:
    """Parse one YAML document with BoundedLoader; too deep a nesting is a YAMLError too."""
    try:
        return yaml.load(text, Loader=BoundedLoader)  # noqa: S506  (a SafeLoader subclass)
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None


def yaml_locations(text: str) -> dict[Loc, int]:
    """Map every key path in a YAML document to its 1-based line number (a node reached
    through several aliases is walked once)."""
    out: dict[Loc, int] = {}
    try:
        root = yaml.compose(text, Loader=BoundedLoader)
    except (yaml.YAMLError, RecursionError):
        return out
    seen: set[int] = set()

    def walk(node: yaml.Node, loc: Loc) -> None:
        out.setdefault(loc, node.start_mark.line + 1)
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                out[loc + (str(k.value),)] = k.start_mark.line + 1
                walk(v, loc + (str(k.value),))
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                walk(v, loc + (i,))

    if root is not None:
        walk(root, ())
    return out
