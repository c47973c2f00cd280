"""The recipe schema: YAML in, validated objects out, with ``--set key=value`` overrides.

Errors name the bad key or value, where it is (file:line or the ``--set`` that made it) and the
valid choices, with a "did you mean" when one is close.
"""

from __future__ import annotations

import copy
import re
import typing
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nnopt.core.compute import DEVICE
from nnopt.core.config import (  # noqa: F401
    FACTORY,
    NAME,
    BatchSize,
    Epochs,
    Seed,
    Strict,
    anchor_paths,
    path_fields,
)
from nnopt.core.errors import RecipeError, did_you_mean, unknown_choice
from nnopt.core.registry import DATASETS, METRICS, MODELS, STEPS, Registry
from nnopt.core.yaml_io import MAX_RECIPE_BYTES, Loc, YamlTooBig, safe_yaml, yaml_locations
from nnopt.measure.decide import DecideConfig
from nnopt.measure.target import Target
from nnopt.models.factory import anchor_factory, model_section, resolve_factory
from nnopt.train.tracking import TrackingConfig

DEFAULT_EVALUATE = ["accuracy", "nll", "params", "nonzero_params", "size", "compressed_size",
                    "macs", "latency"]




class StageSpec(BaseModel):
    """One validated stage: the step's registered name, a unique stage name and its config."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    step: str
    name: str
    config: Any
    source: str | None = None  # the earlier stage whose model this stage starts from
    device: str | None = None  # where this stage computes, when not the run's device


INPUT = "input"  # 'from: input' starts a stage from the recipe's model before any stage
STAGE_KEYS = ("from", "device")  # a stage's keys beside its step


class Recipe(Strict):
    """A whole run: data, model, targets, metrics and the stages to apply in order."""

    name: str = Field("run", pattern=NAME, description="the run's name (the default output "
                      "folder is runs/NAME): letters, digits and _.+- only")
    seed: Seed = 0
    device: str = Field("auto", pattern=DEVICE, description="where training, evaluation, "
                        "attacks and the other computations run: auto (a CUDA device when there"
                        " is one), cpu, cuda or cuda:N; a stage may set its own (a stage key "
                        "beside its step, like from)")
    trust: list[Annotated[str, Field(pattern=FACTORY)]] = Field(
        default_factory=list, description="model factories ('module:function') whose code this "
        "recipe vouches for, so that model folders they built may be loaded (the recipe's own "
        "model factory is vouched for already)")
    data: dict[str, Any]
    model: dict[str, Any]
    targets: list[Target] = Field(default_factory=lambda: [Target(name="cpu")])
    evaluate: list[str] = Field(default_factory=lambda: list(DEFAULT_EVALUATE))
    stages: list[dict[str, Any]] = Field(default_factory=list)
    metric_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="settings of metrics that take some, by metric name "
        "(e.g. robust: {eps: 0.1})")
    decide: DecideConfig = Field(default_factory=DecideConfig, description="the constraints "
                                 "the recommended stage per target must meet")
    tracking: TrackingConfig | None = Field(None, description="log the run to MLflow "
                                            "({mlflow: {uri: ...}}) and/or TensorBoard "
                                            "({tensorboard: DIR})")

    @field_validator("targets")
    @classmethod
    def _unique_targets(cls, targets: list[Target]) -> list[Target]:
        names = [t.name for t in targets]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"target names must be unique; repeated: {', '.join(sorted(dup))}")
        return targets


class ResolvedRecipe(BaseModel):
    """A recipe whose sections were validated against the registered config classes."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    recipe: Recipe
    data: Any
    model: Any
    stages: list[StageSpec]
    metric_options: dict[str, Any] = Field(default_factory=dict)
    source: str | None = None  # the recipe file, when it came from one

    def trusted(self) -> tuple[str, ...]:
        """The factories this run vouches for: the recipe's ``trust`` list and the factory that
        its model names (a recipe is code the user chose to run; a model folder is data)."""
        own = getattr(self.model, "factory", None)
        return tuple(self.recipe.trust) + ((own,) if isinstance(own, str) else ())

    def to_dict(self) -> dict[str, Any]:
        """The fully resolved recipe (every default filled in), as written to results.json."""
        out = self.recipe.model_dump(mode="json")
        out["data"] = self.data.model_dump(mode="json")
        out["model"] = self.model.model_dump(mode="json")
        out["stages"] = [{s.step: s.config.model_dump(mode="json"),
                          **({"from": s.source} if s.source else {}),
                          **({"device": s.device} if s.device else {})} for s in self.stages]
        out["metric_options"] = {k: v.model_dump(mode="json")
                                 for k, v in self.metric_options.items()}
        return out


class _Where:
    """Turns an error location into 'file:line' (or the --set that produced the value)."""

    def __init__(self, source: str, lines: dict[Loc, int], overridden: dict[Loc, str]) -> None:
        self.source, self.lines, self.overridden = source, lines, overridden

    def __call__(self, loc: Loc) -> str:
        for n in range(len(loc), -1, -1):
            if loc[:n] in self.overridden:
                return f"--set {self.overridden[loc[:n]]}"
            if loc[:n] in self.lines and n > 0:
                return f"{self.source}:{self.lines[loc[:n]]}"
        return self.source


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "recipe"


def _config_of(ann: Any) -> type[BaseModel] | None:
    """The config class a field holds (also inside ``X | None``)."""
    for t in (ann, *typing.get_args(ann)):
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
    return None


def _walk(cls: type[BaseModel], parts: tuple[Any, ...]
          ) -> tuple[type[BaseModel], tuple[Any, ...], dict[str, type[BaseModel]] | None]:
    """The config class at the end of an error location; the location without the tags of
    one-config-per-method unions (``prune.channel.n`` is shown as ``prune.n``); and that union's
    variants when the class is one of them."""
    parent, shown, union = cls, [], None
    for part in parts:
        variants = getattr(parent, "variants", None)
        if isinstance(variants, dict) and part in variants:
            parent, union = variants[part], variants
            continue
        shown.append(part)
        field = parent.model_fields.get(part) if isinstance(part, str) else None
        sub = _config_of(field.annotation) if field is not None else None
        if sub is not None:
            parent, union = sub, None
    return parent, tuple(shown), union


def _other_method(union: dict[str, type[BaseModel]] | None, bad: str) -> str:
    """For a one-config-per-method union: the methods whose config has the field ``bad``."""
    others = sorted({str(a) for v in (union or {}).values() if bad in v.model_fields
                     for a in typing.get_args(v.model_fields["method"].annotation)})
    return f" (a field of method {' / '.join(map(repr, others))})" if others else ""


def _error_line(err: dict[str, Any], loc: Loc, where: _Where, cls: type[BaseModel] | None) -> str:
    inner = tuple(err["loc"])
    if cls is not None:
        _, inner, _ = _walk(cls, inner)
    full = loc + inner
    if err["type"] == "extra_forbidden" and cls is not None:
        parent, _, union = _walk(cls, tuple(err["loc"][:-1]))
        valid = sorted(parent.model_fields)
        bad = str(err["loc"][-1])
        return (f"{where(full)}: unknown field '{bad}' in {format_loc(full[:-1])}"
                f"{_other_method(union, bad) or did_you_mean(bad, valid)}; valid "
                f"fields: {', '.join(valid)}")
    got = err.get("input")
    shown = repr(got) if len(repr(got)) <= 60 else repr(got)[:57] + "..."
    got_s = f" (got {shown})" if not isinstance(got, (dict, list)) and got is not None else ""
    return f"{where(full)}: {format_loc(full)}: {err['msg']}{got_s}"


def _validate(cls: type[BaseModel], raw: Any, loc: Loc, where: _Where, errors: list[str]) -> Any:
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        errors.extend(_error_line(e, loc, where, cls) for e in exc.errors())
        return None


def _section(registry: Registry, raw: Any, loc: Loc, where: _Where, errors: list[str]) -> Any:
    """Validate a {name: ..., **options} section against the registered config class."""
    if not isinstance(raw, dict) or "name" not in raw:
        errors.append(f"{where(loc)}: {format_loc(loc)} needs a 'name'; valid choices: "
                      f"{', '.join(registry.names())}")
        return None
    name = raw["name"]
    if not isinstance(name, str):
        errors.append(f"{where(loc + ('name',))}: {format_loc(loc)}.name must be a name, got "
                      f"{type(name).__name__}; valid choices: {', '.join(registry.names())}")
        return None
    if name not in registry:
        errors.append(f"{where(loc + ('name',))}: {unknown_choice(registry.kind, name, registry.names())}")
        return None
    return _validate(registry.get(name).config, raw, loc, where, errors)


def resolve(raw: Any, *, source: str = "recipe", text: str | None = None,
            overridden: dict[Loc, str] | None = None) -> ResolvedRecipe:
    """Validate a raw recipe mapping; raise RecipeError naming every problem found."""
    where = _Where(source, yaml_locations(text) if text else {}, overridden or {})
    if not isinstance(raw, dict):
        raise RecipeError(f"{source}: a recipe must be a YAML mapping, got {type(raw).__name__}")
    errors: list[str] = []
    recipe = _validate(Recipe, raw, (), where, errors)
    if recipe is None:
        _raise(errors)
    data = _section(DATASETS, recipe.data, ("data",), where, errors)
    model = _section(MODELS, model_section(recipe.model), ("model",), where, errors)
    if getattr(data, "text", None) and getattr(data, "tokenizer", "") is None:
        if isinstance(getattr(model, "hf", None), str):  # the model folder's own tokenizer
            data.tokenizer = model.hf
        else:
            errors.append(f"{where(('data', 'text'))}: data.text needs a tokenizer: "
                          "data.tokenizer: a tokenizer.json, a model folder holding one, or "
                          "'minilm' (an hf model folder's is taken by default)")
    for i, metric in enumerate(recipe.evaluate):
        if metric not in METRICS:
            errors.append(f"{where(('evaluate', i))}: "
                          f"{unknown_choice('metric', metric, METRICS.names())}")
    options: dict[str, Any] = {}
    for metric, cfg in recipe.metric_options.items():
        loc = ("metric_options", metric)
        configurable = [n for n in METRICS.names() if METRICS.get(n).config is not None]
        if metric not in METRICS or METRICS.get(metric).config is None:
            errors.append(f"{where(loc)}: "
                          f"{unknown_choice('metric with options', metric, configurable)}")
            continue
        if metric not in recipe.evaluate:
            errors.append(f"{where(loc)}: options for '{metric}', which evaluate does not list")
            continue
        validated = _validate(METRICS.get(metric).config, cfg or {}, loc, where, errors)
        if validated is not None:
            options[metric] = validated
    stages: list[StageSpec] = []
    for i, item in enumerate(recipe.stages):
        loc: Loc = ("stages", i)
        source = item.get("from") if isinstance(item, dict) else None
        device = item.get("device") if isinstance(item, dict) else None
        keys = [k for k in item if k not in STAGE_KEYS] if isinstance(item, dict) else []
        if len(keys) != 1:
            errors.append(f"{where(loc)}: each stage is a mapping with one step name (and "
                          f"optionally 'from: STAGE', 'device: cpu|cuda[:N]'), e.g. '- train: "
                          f"{{epochs: 5}}'; valid steps: {', '.join(STEPS.names())}")
            continue
        if device is not None and not (isinstance(device, str) and re.match(DEVICE, device)):
            errors.append(f"{where(loc + ('device',))}: device '{device}': write auto, cpu, "
                          "cuda or cuda:N")
            continue
        step, cfg = keys[0], item[keys[0]]
        if not isinstance(step, str):
            errors.append(f"{where(loc)}: a stage's key is a step name, got "
                          f"{type(step).__name__}; valid steps: {', '.join(STEPS.names())}")
            continue
        if source is not None and not isinstance(source, str):
            errors.append(f"{where(loc + ('from',))}: 'from' names one earlier stage or "
                          f"'{INPUT}', got {type(source).__name__}")
            continue
        if source is not None and source != INPUT and source not in {s.name for s in stages}:
            errors.append(f"{where(loc + ('from',))}: 'from: {source}' must name an earlier "
                          f"stage{did_you_mean(str(source), [s.name for s in stages])} or "
                          f"'{INPUT}' (the recipe's model before any stage); earlier "
                          f"stages: {', '.join(s.name for s in stages) or 'none'}")
            continue
        if step not in STEPS:
            errors.append(f"{where(loc + (step,))}: {unknown_choice('step', step, STEPS.names())}")
            continue
        config = _validate(STEPS.get(step).config, cfg or {}, loc + (step,), where, errors)
        if config is not None:
            taken = {s.name for s in stages}
            name, k = step, 2
            while name in taken:
                name, k = f"{step}-{k}", k + 1
            stages.append(StageSpec(step=step, name=name, config=config, source=source,
                                    device=device))
    _raise(errors)
    return ResolvedRecipe(recipe=recipe, data=data, model=model, stages=stages,
                          metric_options=options)


def _raise(errors: list[str]) -> None:
    if errors:
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise RecipeError(errors[0] + more)


# -- overrides ---------------------------------------------------------------------------------

def apply_override(raw: dict[str, Any], assignment: str) -> Loc:
    """Apply ``key.path=value`` (value parsed as YAML) in place; return the resolved path.

    In the path, ``stages.N`` picks stage N and ``stages.STEP`` the first stage of that step.
    """
    if "=" not in assignment:
        raise RecipeError(f"--set '{assignment}': expected KEY=VALUE, e.g. data.limit=1000")
    key, _, text = assignment.partition("=")
    try:
        value = safe_yaml(text) if text.strip() else None
    except YamlTooBig as exc:
        raise RecipeError(f"--set '{assignment[:60]}': {exc}") from None
    except yaml.YAMLError:
        value = text
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise RecipeError(f"--set '{assignment}': empty key")
    node: Any = raw
    loc: list[str | int] = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            idx = _list_index(node, part, assignment, loc)
            loc.append(idx)
            if not part.lstrip("-").isdigit():  # stages.STEP: descend into that step's config
                node, loc = node[idx], loc + [part]
                if last:
                    node[part] = value
                else:
                    node = node[part]
            elif last:
                node[idx] = value
            else:
                node = node[idx]
            continue
        if not isinstance(node, dict):
            raise RecipeError(f"--set '{assignment}': {format_loc(tuple(loc))} is not a mapping")
        loc.append(part)
        if last:
            node[part] = value
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
    return tuple(loc)


def _list_index(node: list[Any], part: str, assignment: str, loc: list[str | int]) -> int:
    if part.lstrip("-").isdigit():
        idx = int(part)
        if not -len(node) <= idx < len(node):
            raise RecipeError(f"--set '{assignment}': index {idx} out of range for "
                              f"{format_loc(tuple(loc))} (length {len(node)})")
        return idx % len(node)
    for idx, item in enumerate(node):
        if isinstance(item, dict) and part in item and part not in STAGE_KEYS:
            if item[part] is None:
                item[part] = {}
            return idx
    steps = [next(iter(s)) for s in node if isinstance(s, dict) and s]
    raise RecipeError(f"--set '{assignment}': no stage '{part}'{did_you_mean(part, steps)}; "
                      f"stages: {', '.join(steps) or 'none'}")


def load_raw(path: str | Path) -> tuple[dict[str, Any], str]:
    """Read a recipe file; a missing file or a YAML syntax error raises RecipeError."""
    path = Path(path)
    try:
        if path.exists() and not path.is_file():
            raise RecipeError(f"recipe {path} is not a file")
        with path.open("rb") as f:
            data = f.read(MAX_RECIPE_BYTES + 1)
    except FileNotFoundError:
        raise RecipeError(f"recipe file not found: {path.absolute()}") from None
    except OSError as exc:
        raise RecipeError(f"cannot read recipe {path}: {exc.strerror}") from None
    if len(data) > MAX_RECIPE_BYTES:
        raise RecipeError(f"recipe {path} is larger than {MAX_RECIPE_BYTES // 2 ** 20} MiB; a "
                          "recipe is a short YAML file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise RecipeError(f"{path}:{line}: not UTF-8 text (byte {data[exc.start]:#04x}); save "
                          "the recipe as UTF-8") from None
    try:
        raw = safe_yaml(text)
    except YamlTooBig as exc:
        raise RecipeError(f"{path}: invalid YAML: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RecipeError(f"{path}{line}: invalid YAML: {problem}") from None
    return (raw if raw is not None else {}), text


def load_recipe(path: str | Path, overrides: list[str] | tuple[str, ...] = (), *,
                trust: list[str] | tuple[str, ...] = ()) -> ResolvedRecipe:
    """Load, override and validate a recipe file; ``trust`` adds factories (the CLI's
    ``--trust``) to the recipe's ``trust`` list."""
    raw, text = load_raw(path)
    resolved = resolve_with_overrides(raw, overrides, source=str(path), text=text)
    resolved.source = str(Path(path).resolve())
    anchor_recipe(resolved, Path(resolved.source).parent)
    if trust:  # the command line's: a file path from the current folder
        try:
            resolved.recipe.trust = [*resolved.recipe.trust,
                                     *(anchor_factory(t, Path.cwd()) for t in trust)]
        except ValidationError:
            bad = next(t for t in trust if not re.fullmatch(FACTORY, t))
            raise RecipeError(f"--trust '{bad}': expected 'module:function' or "
                              "'path/to/file.py:function', e.g. my_models:build") from None
    return resolved


def anchor_recipe(resolved: ResolvedRecipe, base: Path) -> None:
    """Every relative path of a recipe file (data files and folders, saved models, a trial
    store, factory files and modules beside it) resolved from its folder ``base``, so that the
    recipe means the same files from wherever it runs."""
    anchor_paths([resolved.data, resolved.model, [s.config for s in resolved.stages],
                  resolved.metric_options, resolved.recipe.tracking], base)
    if isinstance(getattr(resolved.model, "factory", None), str):
        resolved.model.factory = anchor_factory(resolved.model.factory, base)
    resolved.recipe.trust = [anchor_factory(t, base) for t in resolved.recipe.trust]


def check_inputs(resolved: ResolvedRecipe) -> None:
    """What ``nnopt validate`` adds to the schema: the factory the recipe names is imported
    (code the user chose to run) and every path it names exists (one line with the absolute
    path when not)."""
    named = [(("data",), resolved.data), (("model",), resolved.model)] + [
        (("stages", i, s.step), s.config) for i, s in enumerate(resolved.stages)]
    for prefix, section in named:
        for loc, cfg, name in path_fields(section, prefix):
            path = Path(getattr(cfg, name))
            if name != "store" and not path.exists():  # a trial store is made when missing
                raise RecipeError(f"{format_loc(loc)}: {path} does not exist (relative paths "
                                  "are read from the recipe's folder)")
    if isinstance(getattr(resolved.model, "factory", None), str):
        resolve_factory(resolved.model.factory)


def resolve_with_overrides(raw: Any, overrides: list[str] | tuple[str, ...] = (), *,
                           source: str = "recipe", text: str | None = None) -> ResolvedRecipe:
    raw = copy.deepcopy(raw)
    overridden: dict[Loc, str] = {}
    for assignment in overrides:
        if not isinstance(raw, dict):
            break
        overridden[apply_override(raw, assignment)] = assignment
    return resolve(raw, source=source, text=text, overridden=overridden)
