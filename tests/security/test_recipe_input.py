"""Recipes, overrides and grids that are malformed or hostile: one line, exit 2, fast."""

from __future__ import annotations

import time

import pytest
from hostile import cli, recipe_file  # noqa: F401  (fixtures)

BOMB = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x, x]"]
                 + [f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]"
                    for p, c in zip("abcdefgh", "bcdefghi")]) + "\nname: *i\n"


@pytest.mark.parametrize("text, needle", [
    (BOMB, "aliases expand it past"),
    ("stages: &s [*s]\n", "refers to the value that contains it"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "invalid YAML"),
    ("name: !!python/object/apply:os.system ['touch pwned']\n", "invalid YAML"),
    ("data: {name: synthetic}\nmodel: {name: cnn}\nstages:\n  - train: {}\n    from: [a]\n",
     "'from' names one earlier stage"),
    ("data: {name: synthetic}\nmodel: {name: cnn}\nstages:\n  - {1: {}}\n",
     "[key]: Input should be a valid string"),
    ("data: {name: [synthetic]}\nmodel: {name: cnn}\n", "data.name must be a name"),
    ("data: {name: synthetic}\nmodel: {name: cnn}\nseed: 100000000000000000000\n", "seed"),
    ("data: {name: synthetic}\nmodel: {name: cnn}\nseed: -1\n", "seed"),
    ("data: {name: synthetic}\nmodel: {name: cnn}\nstages: [{train: {epochs: 1.0e+12}}]\n",
     "epochs: Input should be less than or equal to 100000"),
    ("data: {name: synthetic}\nmodel: {name: cnn}\nstages: [{train: {batch_size: 1.0e+9}}]\n",
     "batch_size"),
    ("data: {name: synthetic}\nmodel: {name: cnn}\ntargets: [{name: t, repeats: 1.0e+15}]\n",
     "repeats"),
    ("data: {name: synthetic}\nmodel: {name: cnn}\nname: ../../elsewhere\n", "name: String"),
    ("data: {name: synthetic}\nmodel: {name: cnn}\nname: /tmp/abs\n", "name: String"),
    ("data: {name: synthetic}\nmodel: {name: cnn}\nname: " + "x" * 100000 + "\n", "(got 'xxx"),
])
def test_bad_recipe_text_is_one_line(text, needle, cli, recipe_file, tmp_path):
    path = recipe_file(text)
    start = time.perf_counter()
    cli("validate", path).one_line_error(needle)
    cli("run", path, "--out", tmp_path / "o").one_line_error(needle)
    assert time.perf_counter() - start < 30
    assert not (tmp_path / "o").exists() and not (tmp_path / "pwned").exists()


def test_non_utf8_huge_and_special_files(cli, tmp_path):
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    cli("validate", latin).one_line_error("not UTF-8 text (byte 0xe9)")
    big = tmp_path / "big.yaml"
    big.write_bytes(b"# padding\n" * 200_000)
    cli("validate", big).one_line_error("larger than 1 MiB")
    cli("validate", tmp_path).one_line_error("is not a file")
    cli("validate", "/dev/zero").one_line_error("is not a file")
    cli("validate", tmp_path / "nope.yaml").one_line_error(f"not found: {tmp_path / 'nope.yaml'}")


def test_bad_overrides_and_grids(cli, recipe_file, tmp_path):
    path = recipe_file()
    cli("validate", path, "--set", "seed=18446744073709551617").one_line_error("seed")
    cli("validate", path, "--set", "stages.0.from=[a]").one_line_error("'from' names one")
    cli("sweep", path, "--grid", "model.hidden=[16,[32", "--out", tmp_path / "sw"
        ).one_line_error("is not valid YAML")
    cli("sweep", path, "--grid", "seed=-5,3", "--out", tmp_path / "sw").one_line_error("seed")
    assert not (tmp_path / "sw").exists()
