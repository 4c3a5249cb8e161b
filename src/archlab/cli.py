"""The ``archlab`` command line."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

from archlab.errors import ConfigError


def parse_sets(items: Sequence[str]) -> dict[str, Any]:
    """``["attention.kv_heads=1", "norm.placement=post"]`` -> typed overrides (YAML scalars)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. attention.kv_heads=1")
        try:
            out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {key}: cannot read value {raw!r} ({e})") from None
    return out


def load_config(spec: str, sets: Sequence[str] = ()):
    """A preset name or a path to a JSON/YAML config, with --set overrides applied."""
    from archlab import presets
    from archlab.config import ModelConfig

    path = Path(spec)
    if path.suffix in (".json", ".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{spec}: no such config file")
        cfg = ModelConfig.from_json(path) if path.suffix == ".json" else ModelConfig.from_yaml(path)
    else:
        cfg = presets.get(spec)
    overrides = parse_sets(sets)
    return cfg.replace(**overrides) if overrides else cfg


def parse_size(text: str) -> int:
    """'4k' -> 4096, '128k' -> 131072, '1m' -> 1048576, '2048' -> 2048."""
    t = text.strip().lower()
    mult = {"k": 1024, "m": 1024**2}.get(t[-1:], 1)
    try:
        n = int(float(t[:-1] if mult > 1 else t) * mult)
    except ValueError:
        raise ConfigError(f"{text!r}: expected a token count such as 4096, 4k or 128k") from None
    if n <= 0:
        raise ConfigError(f"{text!r}: must be positive")
    return n


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.2f} {unit}"
        n /= 1024
    return str(n)


def table(rows: Sequence[Sequence[str]], header: Sequence[str] | None = None) -> str:
    allrows = ([list(header)] if header else []) + [list(r) for r in rows]
    widths = [max(len(r[i]) for r in allrows) for i in range(len(allrows[0]))]
    lines = []
    for j, r in enumerate(allrows):
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if header and j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_presets(args: argparse.Namespace) -> int:
    from archlab import count_params, presets

    rows = []
    for name in presets.names():
        cfg = presets.get(name)
        p = count_params(cfg)
        rows.append([name, f"{p.total:,}", f"{p.active:,}", str(cfg.n_layers), str(cfg.d_model)])
    print(table(rows, ["preset", "params", "active", "layers", "width"]))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from archlab.analysis import cache_bytes, cache_bytes_per_token, count_params, dtype_size, flops_per_token

    cfg = load_config(args.config, args.set)
    dtype = args.dtype
    dtype_size(dtype)
    p = count_params(cfg)
    seq = parse_size(args.seq_len)
    per_tok = cache_bytes_per_token(cfg, dtype)
    whole = cache_bytes(cfg, seq, 1, dtype)
    f = flops_per_token(cfg, seq)
    specs = cfg.plan.specs(cfg.n_layers)
    mix = ", ".join(sorted({f"{s.mixer}/{s.ffn}" for s in specs}))
    rows = [
        ["model", cfg.name or args.config],
        ["layers x width", f"{cfg.n_layers} x {cfg.d_model}"],
        ["layer kinds (mixer/ffn)", mix],
        ["attention", f"{cfg.attention.heads} heads, {cfg.attention.n_kv} kv heads, head dim {cfg.attention.dim(cfg.d_model)}"
                      + (f", window {cfg.attention.window}" if cfg.attention.window else "")],
        ["position", cfg.position.kind + ("" if cfg.position.scaling.kind == "none" else f" + {cfg.position.scaling.kind}")],
        ["parameters (total)", f"{p.total:,}"],
        ["parameters (active)", f"{p.active:,}"],
        ["parameters (embedding)", f"{p.embedding:,}"],
        ["parameters (untied head)", f"{p.head:,}"],
        [f"forward FLOPs/token @ {seq:,}", f"{f:,.0f}"],
        [f"KV-cache bytes/token ({dtype})", f"{per_tok:,}"],
        [f"cache bytes @ {seq:,} tokens", f"{whole:,} ({human_bytes(whole)})"],
    ]
    for n in (4096, 32768, 131072):
        b = cache_bytes(cfg, n, 1, dtype)
        rows.append([f"cache bytes @ {n // 1024}k tokens", f"{b:,} ({human_bytes(b)})"])
    print(table(rows))
    return 0


def cmd_convert(args: argparse.Namespace) -> int:
    """transformers checkpoint <-> archlab's format (config.json of the ModelConfig + model.safetensors)."""
    import json

    import torch

    from archlab.interop import MissingDependencyError, from_hf, load_archlab, save_archlab, to_hf

    dtypes = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
              "fp16": torch.float16, "float16": torch.float16}
    if args.dtype is not None and args.dtype not in dtypes:
        raise ConfigError(f"--dtype {args.dtype!r}: accepted: {', '.join(dtypes)}")
    dtype = dtypes.get(args.dtype) if args.dtype else None
    try:
        if args.from_hf:
            model = from_hf(args.from_hf, dtype=dtype)
            out = save_archlab(model, args.out, max_shard_size=args.max_shard_size)
            what = "archlab (config.json + model.safetensors)"
        else:
            model = load_archlab(args.to_hf, dtype=dtype)
            out = to_hf(model, args.out, model_type=args.model_type, max_shard_size=args.max_shard_size)
            what = f"transformers {json.loads((out / 'config.json').read_text())['model_type']}"
    except MissingDependencyError as e:
        print(f"archlab: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({what}): {model.num_params():,} parameters, {model.cfg.n_layers} layers x {model.cfg.d_model}")
    return 0


def cmd_kv(args: argparse.Namespace) -> int:
    """Cache memory per preset: weights, cache per token and per request, batch that fits."""
    from archlab.analysis.planner import format_report, kv_report, parse_bytes, plot_cache_vs_context

    contexts = [parse_size(c) for c in args.context.split(",") if c.strip()]
    gpu_mem = parse_bytes(args.gpu_mem) if args.gpu_mem else None
    cfgs = [load_config(spec, args.set) for spec in args.configs]
    reports = [kv_report(cfg, contexts, dtype=args.dtype, batch=args.batch, gpu_mem=gpu_mem,
                         weight_dtype=args.weight_dtype, name=cfg.name or spec) for cfg, spec in zip(cfgs, args.configs)]
    print("\n\n".join(format_report(r) for r in reports))
    print("\n(max batch: weights + caches only; activations and allocator slack not counted)")
    if args.plot:
        try:
            plot_cache_vs_context(cfgs, args.plot, dtype=args.dtype, max_context=max(contexts), gpu_mem=gpu_mem,
                                  names=[r.name for r in reports])
        except ImportError as e:
            print(f"archlab: error: {e}", file=sys.stderr)
            return 2
        print(f"wrote {args.plot}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="archlab", description="The decoder-only transformer as a design space.")
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("presets", help="list the published architectures")
    p.set_defaults(fn=cmd_presets)
    p = sub.add_parser("info", help="parameters, FLOPs and cache bytes of a preset or config file")
    p.add_argument("config", help="preset name (archlab presets) or a .json/.yaml config")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, repeatable")
    p.add_argument("--seq-len", default="4096", help="context length for FLOPs and whole-cache bytes (e.g. 4k)")
    p.add_argument("--dtype", default="bf16", help="cache dtype: bf16, fp16, fp32, fp8, int8")
    p.set_defaults(fn=cmd_info)
    p = sub.add_parser("convert", help="convert between a transformers checkpoint and archlab's format",
                       description="archlab's format is a directory with config.json (the ModelConfig) and "
                                   "model.safetensors (or shards + model.safetensors.index.json).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from-hf", metavar="DIR", help="a local transformers directory (config.json + safetensors)")
    src.add_argument("--to-hf", metavar="ARCHLAB_DIR", help="a directory in archlab's format")
    p.add_argument("--out", required=True, metavar="DIR", help="directory to write")
    p.add_argument("--model-type", default=None, help="with --to-hf: the transformers family (default: the first that fits)")
    p.add_argument("--dtype", default=None, help="cast weights: fp32, bf16, fp16 (default: keep)")
    p.add_argument("--max-shard-size", default="5GB", help="split weights into files of at most this size (e.g. 2GB)")
    p.set_defaults(fn=cmd_convert)
    p = sub.add_parser("kv", help="KV-cache/state memory per preset: per token, per request, batch that fits a GPU")
    p.add_argument("configs", nargs="+", metavar="PRESET", help="preset names or .json/.yaml configs")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override for every config")
    p.add_argument("--context", default="4k,32k,128k", help="comma-separated context lengths (e.g. 4k,32k,128k)")
    p.add_argument("--batch", type=int, default=1, help="requests per batch for the batch cache column")
    p.add_argument("--dtype", default="bf16", help="cache dtype: bf16, fp16, fp32, or int8/fp8 (quantized, scales included)")
    p.add_argument("--weight-dtype", default="bf16", help="weight dtype for the weight bytes: bf16, fp16, fp32, fp8, int8")
    p.add_argument("--gpu-mem", default="141GiB", help="GPU memory for the largest batch (e.g. 141GiB, 80GB)")
    p.add_argument("--plot", metavar="OUT.png", help="draw cache bytes against context, one line per preset (needs matplotlib)")
    p.set_defaults(fn=cmd_kv)
    from archlab.train.cli import add_commands as add_train_commands  # train, generate

    add_train_commands(sub)
    from archlab.eval.cli import add_eval_parser

    add_eval_parser(sub)
    from archlab.sweep.cli import add_sweep_parser  # sweep
    from archlab.report.cli import add_report_parser  # report

    add_sweep_parser(sub)
    add_report_parser(sub)
    from archlab.bench.cli import add_bench_parser  # bench

    add_bench_parser(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.fn(args) or 0)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"archlab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
