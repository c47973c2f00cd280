from __future__ import annotations

from pathlib import Path

import pytest

from conftest import tiny_raw
from nnopt.core.errors import RecipeError
from nnopt.recipe import apply_override, load_recipe, resolve, resolve_with_overrides

ROOT = Path(__file__).resolve().parents[1]


def test_tiny_recipe_resolves_with_defaults_filled():
    r = resolve(tiny_raw())
    assert r.data.name == "synthetic" and r.data.val_fraction == 0.1
    assert r.model.width == 4 and r.model.depth == 2
    assert [s.name for s in r.stages] == ["train"]
    assert r.stages[0].config.epochs == 2 and r.stages[0].config.optimizer == "adamw"
    d = r.to_dict()
    assert d["stages"][0]["train"]["schedule"] == "cosine"


def test_repeated_steps_get_unique_stage_names():
    r = resolve(tiny_raw(stages=[{"train": {"epochs": 1}}, {"train": None}, {"train": {}}]))
    assert [s.name for s in r.stages] == ["train", "train-2", "train-3"]


@pytest.mark.parametrize("recipe", sorted((ROOT / "recipes").glob("*.yaml")))
def test_shipped_recipes_validate(recipe):
    assert load_recipe(recipe).stages


def test_unknown_step_names_location_and_suggestion(write_recipe):
    text = ("name: t\ndata: {name: synthetic}\nmodel: {name: mlp}\nstages:\n"
            "  - trian: {epochs: 1}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(text))
    msg = str(e.value)
    assert ":5:" in msg and "unknown step 'trian'" in msg and "did you mean 'train'" in msg
    assert "train" in msg.split("valid choices: ")[1].split(", ")


def test_unknown_field_lists_valid_fields(write_recipe):
    text = ("data: {name: synthetic}\nmodel: {name: cnn, widht: 8}\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(text))
    msg = str(e.value)
    assert ":2:" in msg and "unknown field 'widht'" in msg and "did you mean 'width'" in msg
    assert "valid fields:" in msg and "depth" in msg


def test_wrong_type_names_key_and_value(write_recipe):
    text = ("data: {name: synthetic}\nmodel: {name: mlp}\nstages:\n"
            "  - train:\n      epochs: many\n")
    with pytest.raises(RecipeError) as e:
        load_recipe(write_recipe(text))
    msg = str(e.value)
    assert ":5:" in msg and "stages[0].train.epochs" in msg and "'many'" in msg


def test_unknown_dataset_model_metric_and_runtime():
    for raw, needle in [
        (tiny_raw(data={"name": "fashion"}), "unknown dataset 'fashion' (did you mean 'fashion-mnist'?)"),
        (tiny_raw(model={"name": "resnt"}), "unknown model 'resnt' (did you mean 'resnet'?)"),
        (tiny_raw(evaluate=["acuracy"]), "unknown metric 'acuracy' (did you mean 'accuracy'?)"),
        (tiny_raw(targets=[{"name": "x", "runtime": "tflite"}]), "targets[0].runtime"),
    ]:
        with pytest.raises(RecipeError) as e:
            resolve(raw)
        assert needle in str(e.value)


def test_unknown_top_level_key():
    with pytest.raises(RecipeError, match="unknown field 'stage' in recipe .*did you mean 'stages'"):
        resolve(tiny_raw(stage=[]))


def test_duplicate_target_names_rejected():
    t = {"name": "a"}
    with pytest.raises(RecipeError, match="repeated: a"):
        resolve(tiny_raw(targets=[t, t]))


def test_invalid_yaml_and_missing_file(tmp_path, write_recipe):
    with pytest.raises(RecipeError, match=r"recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")
    with pytest.raises(RecipeError, match=r":2: invalid YAML"):
        load_recipe(write_recipe("a: 1\nb: c: d\n"))


def test_overrides_by_index_by_step_and_nested():
    raw = tiny_raw()
    assert apply_override(raw, "stages.train.epochs=7") == ("stages", 0, "train", "epochs")
    assert raw["stages"][0]["train"]["epochs"] == 7
    apply_override(raw, "stages.0.train.lr=0.5")
    apply_override(raw, "data.limit=10")
    apply_override(raw, "model.hidden=[3]")
    assert raw["stages"][0]["train"]["lr"] == 0.5 and raw["data"]["limit"] == 10
    assert raw["model"]["hidden"] == [3]


def test_override_errors_name_the_set():
    with pytest.raises(RecipeError, match="no stage 'prune'"):
        apply_override(tiny_raw(), "stages.prune.amount=0.5")
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        apply_override(tiny_raw(), "data.limit")
    with pytest.raises(RecipeError, match=r"--set stages.train.epochs=0: stages\[0\].train.epochs"):
        resolve_with_overrides(tiny_raw(), ["stages.train.epochs=0"])


def test_stage_from_names_an_earlier_stage():
    r = resolve(tiny_raw(stages=[{"train": {}}, {"train": {}, "from": "train"}]))
    assert r.stages[1].source == "train" and r.to_dict()["stages"][1]["from"] == "train"
    with pytest.raises(RecipeError, match="'from: trian' must name an earlier stage "
                                          "\\(did you mean 'train'\\?\\)"):
        resolve(tiny_raw(stages=[{"train": {}}, {"train": {}, "from": "trian"}]))


def test_from_input_starts_a_stage_from_the_untrained_model(tmp_path):
    from conftest import tiny_raw
    from nnopt.runner import run_recipe

    raw = tiny_raw(stages=[{"train": {"epochs": 2, "batch_size": 32}},
                           {"train": {"epochs": 2, "batch_size": 32}, "from": "input"}])
    raw["evaluate"] = ["accuracy", "nll"]
    first, again = run_recipe(resolve(raw), tmp_path).stages
    # same seed, same untrained start, same training: the same model
    assert again.metrics == first.metrics
    raw["stages"][1]["from"] = "inpt"
    with pytest.raises(RecipeError, match="or 'input'"):
        resolve(raw)
