"""Property: any mutation of a shipped recipe validates, or fails with one line and exit 2 within
a few seconds; never an internal error."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import yaml
from hostile import Result, cli  # noqa: F401  (fixtures)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))
RAW = {p.name: yaml.safe_load(p.read_text()) for p in RECIPES}

VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-2 ** 70, 2 ** 70),
    st.sampled_from([0, -1, 1e308, -1e308, 1e-320, float("nan"), float("inf"), 2 ** 64, 1e12]),
    st.floats(allow_nan=True), st.text(max_size=12),
    st.sampled_from(["../../etc", "/dev/zero", "os:system", "cnn", "train", "auto", "~", "-"]),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=4),
                                                              st.integers(), max_size=2))
INJECTIONS = ["!!python/object/apply:os.system ['touch pwned']", "*nope", "&a x", "!!binary AA==",
              "!!set {a, b}", "!!timestamp 2001-12-14", "{<<: [1]}", "[*a]", "!<tag:x> 1",
              "'unterminated", "\t", "? [a]\n  : b"]


def paths(node: Any, at: tuple = ()) -> list[tuple]:
    out = [at]
    if isinstance(node, dict):
        for k, v in node.items():
            out += paths(v, at + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += paths(v, at + (i,))
    return out


def mutate(raw: Any, data: st.DataObject) -> Any:
    where = data.draw(st.sampled_from(paths(raw)))
    op = data.draw(st.sampled_from(["drop", "rename", "retype", "wrap", "nest"]))
    if not where:
        return data.draw(VALUES) if op == "retype" else raw
    parent = raw
    for part in where[:-1]:
        parent = parent[part]
    key = where[-1]
    if op == "drop":
        del parent[key]
    elif op == "rename" and isinstance(parent, dict):
        parent[data.draw(st.one_of(st.text(max_size=8), st.integers()))] = parent.pop(key)
    elif op == "retype":
        parent[key] = data.draw(VALUES)
    elif op == "wrap":
        parent[key] = [parent[key]]
    else:
        parent[key] = {data.draw(st.sampled_from(["name", "from", "train", "x"])): parent[key]}
    return raw


@settings(max_examples=int(__import__("os").environ.get("FUZZ_N", 120)), deadline=None,
          suppress_health_check=list(HealthCheck))
@given(name=st.sampled_from(sorted(RAW)), data=st.data())
def test_mutated_recipes_validate_or_fail_in_one_line(name, data, cli, tmp_path):
    raw = yaml.safe_load(yaml.safe_dump(RAW[name]))
    for _ in range(data.draw(st.integers(1, 3))):
        raw = mutate(raw, data)
    text = yaml.safe_dump(raw, sort_keys=False, allow_unicode=True)
    if data.draw(st.booleans()):
        lines = text.splitlines() or [""]
        i = data.draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i] + " " + data.draw(st.sampled_from(INJECTIONS))
        text = "\n".join(lines) + "\n"
    path = tmp_path / "mutant.yaml"
    path.write_text(text, encoding="utf-8")
    start = time.perf_counter()
    res: Result = cli("validate", path)
    assert time.perf_counter() - start < 5
    if res.code != 0:
        res.one_line_error()
    assert not (tmp_path / "pwned").exists()
