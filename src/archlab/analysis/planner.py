"""KV-cache / state memory planning from the config alone (``archlab kv``).

For a model and a list of context lengths: the weight bytes, the cache bytes per request
(every layer kind of the plan: full, windowed -- flat past its window --, sink + window,
MLA latent, quantized with scales, recurrent states of fixed size), their ratio, and the
largest batch whose weights + caches fit in a given GPU memory. Activations, the CUDA
context and allocator slack are not counted, so the batch is an upper bound.

Cache dtypes: ``bf16``/``fp16``/``fp32`` store every cache in that type; ``int8``/``fp8``
quantize the attention caches (``attention.cache_dtype``: 1-byte values plus a float32
scale per token and head) while recurrent states stay in bf16.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

from archlab.analysis.cache import cache_bytes, cache_bytes_per_token, dtype_size
from archlab.analysis.counts import count_params
from archlab.config import ModelConfig

QUANTIZED = ("int8", "fp8")  # cache dtypes that mean a quantized attention cache
PLAIN = ("bf16", "fp16", "fp32")
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def parse_bytes(text: str) -> int:
    """'141GiB' -> 151397597184; '80GB' -> 80e9; '1024' -> 1024 (GiB/MiB binary, GB/MB decimal)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _UNITS:
        raise ValueError(f"--gpu-mem: {text!r} is not a size; use e.g. 141GiB, 80GB or a byte count")
    n = int(float(m.group(1)) * _UNITS[unit])
    if n <= 0:
        raise ValueError(f"--gpu-mem: {text!r} must be positive")
    return n


def with_cache_dtype(cfg: ModelConfig, dtype: str) -> tuple[ModelConfig, str]:
    """The config whose caches :func:`cache_bytes` should count, and the element dtype of the rest."""
    if dtype in QUANTIZED:
        return cfg.replace(**{"attention.cache_dtype": dtype}), "bf16"
    if dtype not in PLAIN:
        raise ValueError(f"--dtype: unknown cache dtype {dtype!r}; accepted: {', '.join(PLAIN + QUANTIZED)}")
    return cfg, dtype


@dataclass(frozen=True)
class KVRow:
    context: int  # tokens per request
    cache_bytes: int  # whole cache of one request at that context
    batch_cache_bytes: int  # for the requested batch size
    cache_over_weights: float  # batch cache bytes / weight bytes
    max_batch: int  # requests of that context whose caches fit beside the weights (0: none)


@dataclass(frozen=True)
class KVReport:
    name: str
    dtype: str  # cache dtype
    weight_dtype: str
    params: int
    weight_bytes: int
    bytes_per_token: int  # growth per token while every window is still filling
    batch: int
    gpu_mem: int | None
    rows: tuple[KVRow, ...]


def max_batch(cfg: ModelConfig, context: int, gpu_mem: int, *, dtype: str = "bf16", weight_bytes: int) -> int:
    """Largest batch of ``context``-token requests whose caches fit in gpu_mem beside the weights
    (every cache is per sequence, so the cache of a batch is batch x one request's)."""
    free = gpu_mem - weight_bytes
    qcfg, elem = with_cache_dtype(cfg, dtype)
    per_request = cache_bytes(qcfg, context, 1, elem)
    if free <= 0:
        return 0
    return free // per_request if per_request else 2**63 - 1


def kv_report(cfg: ModelConfig, contexts: Sequence[int], *, dtype: str = "bf16", batch: int = 1,
              gpu_mem: int | None = None, weight_dtype: str = "bf16", name: str | None = None) -> KVReport:
    if batch <= 0:
        raise ValueError(f"--batch: must be a positive integer, got {batch}")
    if not contexts or any(c <= 0 for c in contexts):
        raise ValueError(f"--context: expected positive token counts, got {list(contexts)}")
    qcfg, elem = with_cache_dtype(cfg, dtype)
    params = count_params(cfg).total
    weight_bytes = params * dtype_size(weight_dtype)
    rows = []
    for n in contexts:
        one = cache_bytes(qcfg, n, 1, elem)
        fit = max_batch(cfg, n, gpu_mem, dtype=dtype, weight_bytes=weight_bytes) if gpu_mem is not None else 0
        rows.append(KVRow(n, one, one * batch, one * batch / weight_bytes, fit))
    return KVReport(name or cfg.name or "model", dtype, weight_dtype, params, weight_bytes,
                    cache_bytes_per_token(qcfg, elem), batch, gpu_mem, tuple(rows))


def _tokens(n: int) -> str:
    return f"{n // 1024}k" if n % 1024 == 0 and n >= 1024 else str(n)


def _short_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:g} {unit}"
        n /= 1024
    return f"{n:g}"


def format_report(r: KVReport) -> str:
    from archlab.cli import human_bytes, table

    head = (f"{r.name}: {r.params:,} parameters = {human_bytes(r.weight_bytes)} of weights ({r.weight_dtype}); "
            f"cache ({r.dtype}) {r.bytes_per_token:,} bytes/token while filling")
    if r.gpu_mem is not None:
        head += f"; GPU {human_bytes(r.gpu_mem)}"
        if r.weight_bytes >= r.gpu_mem:
            head += " (the weights alone do not fit)"
    header = ["context", "cache/request", "bytes/token (mean)", f"cache x{r.batch}", "cache/weights", "max batch"]
    rows = [[_tokens(x.context), human_bytes(x.cache_bytes), f"{x.cache_bytes / x.context:,.0f}",
             human_bytes(x.batch_cache_bytes), f"{x.cache_over_weights:.3g}",
             "-" if r.gpu_mem is None else f"{x.max_batch:,}"] for x in r.rows]
    return head + "\n" + table(rows, header)


def plot_cache_vs_context(cfgs: Sequence[ModelConfig], path: str, *, dtype: str = "bf16", max_context: int = 131072,
                          gpu_mem: int | None = None, names: Sequence[str] | None = None) -> None:
    """Cache bytes of one request against context length (log-log), one line per model."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("archlab kv --plot needs matplotlib: pip install 'archlab[plot]'") from None
    xs = sorted({2**k for k in range(7, 40) if 2**k <= max(max_context, 256)} | {max_context})
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, cfg in enumerate(cfgs):
        qcfg, elem = with_cache_dtype(cfg, dtype)
        ys = [cache_bytes(qcfg, x, 1, elem) for x in xs]
        label = names[i] if names else (cfg.name or f"model {i}")
        ax.plot(xs, ys, marker="o", markersize=3, label=label)
    if gpu_mem is not None:
        ax.axhline(gpu_mem, color="gray", linestyle="--", linewidth=1, label="GPU memory")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log", base=2)
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _tokens(int(v)) if v >= 1 else ""))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _short_bytes(v)))
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel(f"cache bytes per request ({dtype})")
    ax.set_title("KV-cache / state memory against context")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
