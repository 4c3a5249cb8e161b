"""Sweep specs: which models to compare, under which matched budget, how to train and evaluate them.

A spec is a YAML file (or a built-in name: ``archlab sweep chapter``) read into the frozen
``SweepSpec`` below. Its shape::

    name: attention
    extends: _base              # optional: a built-in spec or a path whose fields this one overrides
    base: {preset: llama-3-debug, set: {attention.kv_heads: null}}
    train: {seq_len: 128, batch_size: 16}           # TrainConfig fields (dotted), lr and seed excepted
    budget: {tokens: 600000, match: params, adjust: ffn}
    seeds: [0, 1]
    lrs: [0.003, 0.01]          # each variant trains at each lr; the best is kept (lr_search)
    evals: {ppl: {}, positions: {k: 4}, passkey: {}, throughput: {}, mqar: {...}}
    comparisons:
      - name: attention
        title: MHA vs GQA vs MQA
        budget: {match: params}                     # overrides of the spec's budget for this comparison
        variants:
          - {name: mha, set: {}}
          - {name: gqa, set: {attention.kv_heads: 2}}
        grid: {attention.window: [16, 32]}          # and/or: every combination of the listed values
    scales:
      gpu: {train: {seq_len: 1024}, budget: {tokens: 200000000}}   # merged in by --scale gpu

Unknown keys are errors (``ConfigError`` naming the key and what is accepted), so a typo in
a spec never silently becomes a default. Model overrides are checked when the sweep is
planned: a variant whose config does not validate is kept and reported with the reason.
"""
from __future__ import annotations

import copy
import dataclasses
import itertools
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping

from archlab.configbase import Config
from archlab.errors import ConfigError, check
from archlab.eval.mqar import MQARConfig
from archlab.eval.recipe import TrainRecipe

MatchKind = Literal["none", "params", "active_params", "non_embedding_params", "flops"]
AdjustKind = Literal["ffn", "width", "depth"]
EVAL_NAMES = ("ppl", "positions", "passkey", "throughput", "mqar")
BUILTIN_PACKAGE = "archlab.sweep.specs"


@dataclass(frozen=True)
class BaseModel(Config):
    _section = "base"
    preset: str | None = None  # a preset name (archlab presets) to start from
    model: Mapping[str, Any] | None = None  # or a whole ModelConfig as a mapping; neither: ModelConfig defaults
    set: Mapping[str, Any] = field(default_factory=dict)  # dotted ModelConfig overrides applied on top

    def __post_init__(self) -> None:
        check(self.preset is None or self.model is None, "base.model", "give a preset or a model mapping, not both")


@dataclass(frozen=True)
class BudgetSpec(Config):
    _section = "budget"
    tokens: int | None = None  # training tokens of every run; steps = tokens / (batch_size * seq_len); None: train.steps
    match: MatchKind = "none"  # what else each variant is matched on (to its comparison's reference variant)
    adjust: AdjustKind = "ffn"  # the knob moved to match: FFN hidden widths, d_model, or n_layers
    reference: str | None = None  # the variant whose value is the target; None: the comparison's first variant
    tolerance: float = 0.05  # a match further off than this relative error is flagged in the report
    multiple: int = 8  # FFN widths and d_model are kept multiples of this

    def __post_init__(self) -> None:
        check(self.tokens is None or self.tokens >= 1, "budget.tokens", f"must be >= 1 or null, got {self.tokens}")
        check(self.tolerance > 0, "budget.tolerance", f"must be > 0, got {self.tolerance}")
        check(self.multiple >= 1, "budget.multiple", f"must be >= 1, got {self.multiple}")


@dataclass(frozen=True)
class PplEval(Config):
    _section = "evals.ppl"
    max_tokens: int | None = 65536  # validation tokens scored (None: the whole split)
    batch_size: int = 16  # windows per forward pass
    n_bootstrap: int = 200  # bootstrap resamples for the interval over documents

    def __post_init__(self) -> None:
        check(self.max_tokens is None or self.max_tokens >= 1, "evals.ppl.max_tokens", "must be >= 1 or null")
        check(self.batch_size >= 1, "evals.ppl.batch_size", "must be >= 1")
        check(self.n_bootstrap >= 0, "evals.ppl.n_bootstrap", "must be >= 0")


@dataclass(frozen=True)
class PositionsEval(Config):
    _section = "evals.positions"
    k: int = 4  # score contexts up to k x the training length (loss ratios at 2x and 4x need k >= 4)
    max_windows: int = 16  # validation windows of k x seq_len tokens averaged
    batch_size: int = 4  # windows per forward pass

    def __post_init__(self) -> None:
        check(self.k >= 1, "evals.positions.k", f"must be >= 1, got {self.k}")
        check(self.max_windows >= 1 and self.batch_size >= 1, "evals.positions.max_windows",
              "max_windows and batch_size must be >= 1")


@dataclass(frozen=True)
class PasskeyEval(Config):
    _section = "evals.passkey"
    lengths: tuple[int, ...] = (256, 512)  # prompt lengths in tokens (a prompt needs about 250 bytes at least)
    depths: tuple[float, ...] = (0.0, 0.5, 1.0)  # where the key sits in the filler (share before it)
    n_trials: int = 4  # keys tried per (length, depth) cell
    batch_size: int = 8  # prompts decoded together

    def __post_init__(self) -> None:
        check(len(self.lengths) > 0 and min(self.lengths) >= 1, "evals.passkey.lengths", "list lengths >= 1")
        check(len(self.depths) > 0 and all(0 <= d <= 1 for d in self.depths), "evals.passkey.depths",
              "list depths in [0, 1]")
        check(self.n_trials >= 1 and self.batch_size >= 1, "evals.passkey.n_trials", "n_trials and batch_size must be >= 1")


@dataclass(frozen=True)
class ThroughputEval(Config):
    _section = "evals.throughput"
    lengths: tuple[int, ...] = (128, 256, 512, 1024)  # sequence lengths of the timed forward passes
    tokens: int = 8192  # tokens per timed call (batch = max(1, tokens // length))
    repeats: int = 3  # timed calls per length after one warm-up (the median is kept)

    def __post_init__(self) -> None:
        check(len(self.lengths) > 0 and min(self.lengths) >= 1, "evals.throughput.lengths", "list lengths >= 1")
        check(self.tokens >= 1 and self.repeats >= 1, "evals.throughput.tokens", "tokens and repeats must be >= 1")


@dataclass(frozen=True)
class MQAREval(Config):
    _section = "evals.mqar"
    task: MQARConfig = field(default_factory=MQARConfig)  # the recall task (archlab.eval.mqar)
    recipe: TrainRecipe = field(default_factory=TrainRecipe)  # how each architecture is trained on it; lr and seed come from lrs and seeds
    lrs: tuple[float, ...] | None = None  # learning-rate grid of the MQAR runs; None: the recipe's lr only
    set: Mapping[str, Any] = field(default_factory=dict)  # model overrides for the MQAR copy of every variant (e.g. fewer layers)

    def __post_init__(self) -> None:
        check(self.lrs is None or (len(self.lrs) > 0 and min(self.lrs) > 0), "evals.mqar.lrs",
              "list positive learning rates, or null for the recipe's lr")
        check(self.lrs is None or len(set(self.lrs)) == len(self.lrs), "evals.mqar.lrs", "lists a learning rate twice")


@dataclass(frozen=True)
class EvalsSpec(Config):
    _section = "evals"
    ppl: PplEval | None = None  # validation perplexity with a bootstrap interval
    positions: PositionsEval | None = None  # loss by position past the training length; loss ratios at 2x, 4x
    passkey: PasskeyEval | None = None  # passkey retrieval accuracy
    throughput: ThroughputEval | None = None  # forward tokens/s against sequence length
    mqar: MQAREval | None = None  # the architecture trained from scratch on MQAR (recall)

    def enabled(self) -> tuple[str, ...]:
        return tuple(n for n in EVAL_NAMES if getattr(self, n) is not None)


@dataclass(frozen=True)
class VariantSpec(Config):
    _section = "variant"
    name: str  # label in tables and plots (unique in its comparison)
    set: Mapping[str, Any] = field(default_factory=dict)  # dotted ModelConfig overrides of this variant
    note: str = ""  # one line shown under the table

    def __post_init__(self) -> None:
        check(bool(self.name.strip()), "variant.name", "must not be empty")


@dataclass(frozen=True)
class ComparisonSpec(Config):
    _section = "comparison"
    name: str  # short id (section of the report, --only)
    title: str = ""  # heading in the report
    question: str = ""  # what the comparison asks, shown above its table
    set: Mapping[str, Any] = field(default_factory=dict)  # model overrides shared by all its variants
    variants: tuple[VariantSpec, ...] = ()  # named variants, each a set of dotted overrides
    grid: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)  # and/or every combination of these values
    budget: Mapping[str, Any] = field(default_factory=dict)  # overrides of the spec's budget (match, adjust, reference...)
    evals: tuple[str, ...] | None = None  # which of the spec's evaluations apply; None: all of them

    def __post_init__(self) -> None:
        where = f"comparisons.{self.name}"
        check(bool(self.name.strip()), "comparison.name", "must not be empty")
        for key, values in self.grid.items():
            check(len(values) > 0, f"{where}.grid.{key}", "list at least one value")
        names = [v.name for v in self.all_variants()]
        check(len(names) > 0, f"{where}.variants", "give at least one variant (variants or grid)")
        dup = sorted({n for n in names if names.count(n) > 1})
        check(not dup, f"{where}.variants", f"names must be unique, repeated: {', '.join(dup)}")
        check("tokens" not in self.budget, f"{where}.budget.tokens",
              "every run of a sweep trains on the same tokens; set budget.tokens at the top level")
        if self.evals is not None:
            bad = [e for e in self.evals if e not in EVAL_NAMES]
            check(not bad, f"{where}.evals", f"unknown {', '.join(bad)}; accepted: {', '.join(EVAL_NAMES)}")

    def all_variants(self) -> tuple[VariantSpec, ...]:
        """The named variants, then one per combination of the grid's values."""
        out = list(self.variants)
        if self.grid:
            keys = list(self.grid)
            for combo in itertools.product(*(self.grid[k] for k in keys)):
                name = ",".join(f"{k.split('.')[-1]}={_short(v)}" for k, v in zip(keys, combo))
                out.append(VariantSpec(name=name, set=dict(zip(keys, combo))))
        return tuple(out)


@dataclass(frozen=True)
class SweepSpec(Config):
    _section = ""
    name: str  # the sweep's name (report title, database meta)
    description: str = ""  # a paragraph for the report
    base: BaseModel = field(default_factory=BaseModel)  # the model every variant starts from
    train: Mapping[str, Any] = field(default_factory=dict)  # dotted TrainConfig overrides (data.corpus, seq_len...); not lr or seed
    budget: BudgetSpec = field(default_factory=BudgetSpec)  # training tokens and the default matching rule
    seeds: tuple[int, ...] = (0,)  # every variant is trained once per seed (each cell: mean and spread over seeds)
    lrs: tuple[float, ...] = (3e-3,)  # learning-rate grid per variant; the best by validation loss is kept
    lr_search: Literal["first_seed", "every_seed"] = "first_seed"  # grid on the first seed then the best lr for the others, or the grid on every seed
    evals: EvalsSpec = field(default_factory=EvalsSpec)  # the evaluations and their settings
    comparisons: tuple[ComparisonSpec, ...] = ()  # the families of variants compared
    keep_checkpoints: bool = False  # keep each run's final weights under OUT/runs/ (else only its logs)
    scales: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # named overrides of this spec (--scale NAME)
    scale: str | None = None  # the scale applied when the spec was loaded (recorded, not set by hand)

    def __post_init__(self) -> None:
        check(bool(self.name.strip()), "name", "must not be empty")
        check(len(self.seeds) > 0 and min(self.seeds) >= 0, "seeds", f"list seeds >= 0, got {list(self.seeds)}")
        check(len(set(self.seeds)) == len(self.seeds), "seeds", f"lists a seed twice: {list(self.seeds)}")
        check(len(self.lrs) > 0 and min(self.lrs) > 0, "lrs", f"list learning rates > 0, got {list(self.lrs)}")
        check(len(set(self.lrs)) == len(self.lrs), "lrs", f"lists a learning rate twice: {list(self.lrs)}")
        check(len(self.comparisons) > 0, "comparisons", "list at least one comparison")
        names = [c.name for c in self.comparisons]
        dup = sorted({n for n in names if names.count(n) > 1})
        check(not dup, "comparisons", f"names must be unique, repeated: {', '.join(dup)}")
        for key in self.train:
            head = key.split(".")[0]
            check(head not in ("lr", "seed"), f"train.{key}", "comes from the spec's lrs / seeds; set those instead")
            check(head != "steps" or self.budget.tokens is None, f"train.{key}",
                  "the run length comes from budget.tokens; set one of them, not both")
        self.train_config()  # unknown or bad training keys fail here, naming the key
        enabled = self.evals.enabled()
        for c in self.comparisons:
            budget = self.comparison_budget(c)
            if budget.reference is not None:
                known = [v.name for v in c.all_variants()]
                check(budget.reference in known, f"comparisons.{c.name}.budget.reference",
                      f"names no variant; accepted: {', '.join(known)}")
            missing = [e for e in (c.evals or ()) if e not in enabled]
            check(not missing, f"comparisons.{c.name}.evals",
                  f"{', '.join(missing)} not configured under evals (configured: {', '.join(enabled) or 'none'})")

    def train_config(self):
        """The TrainConfig every run starts from (seed, lr and steps are set per run)."""
        from archlab.train.config import TrainConfig

        try:
            return TrainConfig().replace(**dict(self.train))
        except ConfigError as e:
            raise ConfigError(f"train.{e}" if not str(e).startswith("train.") else str(e)) from None

    def comparison_budget(self, comparison: ComparisonSpec) -> BudgetSpec:
        if not comparison.budget:
            return self.budget
        try:
            return self.budget.replace(**dict(comparison.budget))
        except ConfigError as e:
            raise ConfigError(f"comparisons.{comparison.name}.{e}") from None

    def comparison_evals(self, comparison: ComparisonSpec) -> tuple[str, ...]:
        return self.evals.enabled() if comparison.evals is None else tuple(comparison.evals)

    def only(self, names: list[str]) -> "SweepSpec":
        """The spec restricted to the named comparisons."""
        known = [c.name for c in self.comparisons]
        bad = [n for n in names if n not in known]
        if bad:
            raise ConfigError(f"--only: unknown comparison {', '.join(bad)}; accepted: {', '.join(known)}")
        return dataclasses.replace(self, comparisons=tuple(c for c in self.comparisons if c.name in names))


def _short(v: Any) -> str:
    return "none" if v is None else str(v)


# -- loading ------------------------------------------------------------------------------------
def builtin_specs() -> list[str]:
    """Names of the specs shipped with archlab (``_``-prefixed files are parents, not listed)."""
    root = resources.files(BUILTIN_PACKAGE)
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml") and not p.name.startswith("_"))


def _read_yaml(text: str, where: str) -> dict:
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({e})") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: a sweep spec is a mapping (name, base, comparisons...), got {type(data).__name__}")
    return data


def _locate(spec: str | Path, relative_to: Path | None) -> tuple[str, str]:
    """(YAML text, description) of a built-in name or a file path."""
    p = Path(spec)
    if p.suffix in (".yaml", ".yml") or p.is_file() or "/" in str(spec):
        if not p.is_absolute() and relative_to is not None and not p.is_file():
            p = relative_to / p
        if not p.is_file():
            raise ConfigError(f"{spec}: no such sweep spec file (built-in specs: {', '.join(builtin_specs())})")
        return p.read_text(), str(p)
    res = resources.files(BUILTIN_PACKAGE) / f"{spec}.yaml"
    if not res.is_file():
        import difflib

        close = difflib.get_close_matches(str(spec), builtin_specs(), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ConfigError(f"{spec}: not a built-in sweep spec{hint} (built-in: {', '.join(builtin_specs())}) "
                          f"nor a .yaml file")
    return res.read_text(), f"built-in spec {spec!r}"


def merge(base: Any, over: Any) -> Any:
    """``over`` deep-merged onto ``base``: mappings merge key by key; a mapping over a list of
    named mappings (comparisons, variants) merges into the items by name; anything else replaces."""
    if isinstance(base, Mapping) and isinstance(over, Mapping):
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if k in base else copy.deepcopy(v)
        return out
    if isinstance(base, list) and isinstance(over, Mapping) and all(isinstance(x, Mapping) and "name" in x for x in base):
        names = [x["name"] for x in base]
        bad = [k for k in over if k not in names]
        if bad:
            raise ConfigError(f"scales: {', '.join(map(str, bad))} names no item; accepted: {', '.join(map(str, names))}")
        return [merge(x, over[x["name"]]) if x["name"] in over else x for x in base]
    return copy.deepcopy(over)


def load_raw(spec: str | Path, *, _seen: tuple[str, ...] = (), _relative_to: Path | None = None) -> dict:
    """The spec as plain data with its ``extends`` chain merged in (scales not applied yet)."""
    text, where = _locate(spec, _relative_to)
    if where in _seen:
        raise ConfigError(f"extends: {where} extends itself (chain: {' -> '.join(_seen + (where,))})")
    data = _read_yaml(text, where)
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"{where}: extends must be a built-in spec name or a path, got {parent!r}")
    here = Path(where).parent if Path(where).is_file() else None
    return merge(load_raw(parent, _seen=_seen + (where,), _relative_to=here), data)


def apply_scale(raw: dict, scale: str | None) -> dict:
    if scale is None:
        return raw
    scales = raw.get("scales") or {}
    if scale not in scales:
        raise ConfigError(f"--scale {scale}: {raw.get('name', 'this spec')} has no such scale; "
                          f"accepted: {', '.join(scales) or 'none (the spec defines no scales)'}")
    over = dict(scales[scale] or {})
    out = merge(raw, over)
    out["scale"] = scale
    return out


def load_spec(spec: str | Path | Mapping[str, Any], *, scale: str | None = None,
              sets: Mapping[str, Any] | None = None) -> SweepSpec:
    """A built-in spec name, a YAML path or a mapping, with ``extends`` merged, ``scale`` applied
    and dotted ``sets`` (``{"seeds": [0], "budget.tokens": 1000}``) on top."""
    if isinstance(spec, Mapping):
        raw = dict(spec)
        parent = raw.pop("extends", None)
        if parent is not None:
            raw = merge(load_raw(parent), raw)
    else:
        raw = load_raw(spec)
    raw = apply_scale(raw, scale)
    out = SweepSpec.from_dict(raw)
    return out.replace(**dict(sets)) if sets else out
