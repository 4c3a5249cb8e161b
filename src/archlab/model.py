"""embedding -> blocks -> final norm -> head, with one generic Block.

Shapes: B batch, T tokens, C model width, V vocabulary.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from archlab.cache.base import ModelCache
from archlab.config import ModelConfig
from archlab.norm import build_norm
from archlab.position import build_position
from archlab.position.base import PositionEncoding
from archlab.slots import FFNS, MIXERS


class Block(nn.Module):
    """A token mixer and an FFN, each in a residual branch; norm placement from the config."""

    def __init__(self, cfg: ModelConfig, layer_idx: int, position: PositionEncoding):
        super().__init__()
        spec = cfg.layer_spec(layer_idx)
        lcfg = cfg.layer_config(layer_idx)
        self.layer_idx = layer_idx
        self.placement = lcfg.norm.placement
        self.mixer = MIXERS.get(spec.mixer)(lcfg).build(lcfg, layer_idx, position)
        self.ffn = FFNS.get(spec.ffn)(lcfg).build(lcfg, layer_idx, position)
        C, n = lcfg.d_model, lcfg.norm
        self.mixer_norm = build_norm(C, n)
        two = self.ffn is not None and self.placement != "parallel_shared"
        self.ffn_norm = build_norm(C, n) if two else None
        sandwich = self.placement == "sandwich"
        self.mixer_out_norm = build_norm(C, n) if sandwich else None
        self.ffn_out_norm = build_norm(C, n) if sandwich and self.ffn is not None else None

    def forward(self, x: torch.Tensor, *, positions: torch.Tensor, cache=None, token_ids: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        p = self.placement
        pad = {} if mask is None else {"mask": mask}  # [B, T] True = real token, only for padded batches
        mix = lambda h: self.mixer(h, positions=positions, cache=cache, **pad)  # noqa: E731
        ffn = (lambda h: self.ffn(h, token_ids=token_ids, **pad)) if self.ffn is not None else None  # noqa: E731
        if p == "pre":
            x = x + mix(self.mixer_norm(x))
            return x + ffn(self.ffn_norm(x)) if ffn is not None else x
        if p == "post":
            x = self.mixer_norm(x + mix(x))
            return self.ffn_norm(x + ffn(x)) if ffn is not None else x
        if p == "output":
            x = x + self.mixer_norm(mix(x))
            return x + self.ffn_norm(ffn(x)) if ffn is not None else x
        if p == "sandwich":
            x = x + self.mixer_out_norm(mix(self.mixer_norm(x)))
            return x + self.ffn_out_norm(ffn(self.ffn_norm(x))) if ffn is not None else x
        h = self.mixer_norm(x)
        if ffn is None:
            return x + mix(h)
        h_ffn = h if p == "parallel_shared" else self.ffn_norm(x)
        return x + mix(h) + ffn(h_ffn)


def block_norm_count(cfg: ModelConfig, layer_idx: int) -> int:
    """Norm modules a Block builds for this layer (mirrors Block.__init__)."""
    has_ffn = cfg.layer_spec(layer_idx).ffn != "none"
    p = cfg.layer_config(layer_idx).norm.placement
    n = 1 + (1 if has_ffn and p != "parallel_shared" else 0)
    if p == "sandwich":
        n += 1 + (1 if has_ffn else 0)
    return n


def position_key(cfg: ModelConfig, layer_idx: int) -> str | None:
    """Layers with the same key share one position module; None = the layer gets its own."""
    from archlab.position.base import POSITION

    lcfg = cfg.layer_config(layer_idx)
    if not POSITION.get(lcfg.position.kind).is_shared(lcfg.position):
        return None
    a = lcfg.attention
    return lcfg.position.to_json(indent=None) + f"|{a.heads}|{a.dim(lcfg.d_model)}"


class Model(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        C, V = cfg.d_model, cfg.vocab_size
        self.embed = nn.Embedding(V, C)
        self.embed_norm = build_norm(C, cfg.norm) if cfg.norm.embedding_norm else None
        self.positions = nn.ModuleDict()  # distinct position modules, shared by the layers that agree
        layer_pos: list[PositionEncoding] = []
        for i in range(cfg.n_layers):
            key = position_key(cfg, i)
            name = f"p{len(self.positions)}"
            if key is not None:
                found = next((n for n, m in self.positions.items() if getattr(m, "_key", None) == key), None)
                if found is not None:
                    layer_pos.append(self.positions[found])
                    continue
            lcfg = cfg.layer_config(i)
            pos = build_position(lcfg.position, n_heads=lcfg.attention.heads, head_dim=lcfg.attention.dim(C), d_model=C)
            pos._key = key
            self.positions[name] = pos
            layer_pos.append(pos)
        # the root encoding adds to embeddings (absolute schools); layer 0's module when configs agree
        self.input_position = layer_pos[0] if cfg.layer_config(0).position == cfg.position else build_position(
            cfg.position, n_heads=cfg.attention.heads, head_dim=cfg.attention.dim(C), d_model=C)
        blocks: list[Block] = []
        for i in range(cfg.n_layers):
            j = cfg.tied_to(i)
            blocks.append(blocks[j] if j is not None else Block(cfg, i, layer_pos[i]))  # tied: same module, own cache
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = build_norm(C, cfg.norm) if cfg.norm.final_norm else None
        self.head = None if cfg.tie_embeddings else nn.Linear(C, V, bias=cfg.head_bias)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal(0, init_std) weights, zero biases; residual output projections scaled by
        1/sqrt(2 * n_layers) (GPT-2) so the residual stream's variance does not grow with depth."""
        std = self.cfg.init_std
        owners = [n + "." for n, m in self.named_modules() if getattr(m, "owns_init", False)]
        for name, m in self.named_modules():
            if any(name.startswith(o) for o in owners) or getattr(m, "owns_init", False):
                continue  # the component initialised itself (e.g. SSM dt/A, MoE experts)
            if isinstance(m, (nn.Linear, nn.Embedding)):
                s = std / math.sqrt(2 * self.cfg.n_layers) if name.endswith(("o_proj", "down", "out_proj")) else std
                nn.init.normal_(m.weight, 0.0, s)
                if getattr(m, "bias", None) is not None:
                    nn.init.zeros_(m.bias)
            elif hasattr(m, "reset_parameters") and m is not self and not list(m.children()):
                m.reset_parameters()

    def aux_loss(self) -> torch.Tensor | None:
        """Sum of the auxiliary losses (MoE balancing, already weighted by their coefficients)
        from the last forward; None when no layer has any. The trainer adds it to the LM loss."""
        losses = [m.aux_loss for m in self.modules() if m is not self and isinstance(getattr(m, "aux_loss", None), torch.Tensor)]
        return torch.stack([l.to(losses[0].device).float() for l in losses]).sum() if losses else None

    @property
    def lm_head_weight(self) -> torch.Tensor:
        return self.embed.weight if self.head is None else self.head.weight

    def new_cache(self, batch_size: int, max_len: int, dtype: torch.dtype | None = None, device=None,
                  static: bool = False) -> ModelCache:
        """Preallocated per-layer caches for up to max_len tokens per sequence
        (``static=True``: fixed-shape caches for CUDA-graph decoding, see ModelCache.make_static)."""
        if batch_size <= 0 or max_len <= 0:
            raise ValueError(f"new_cache: batch_size and max_len must be positive, got {batch_size}, {max_len}")
        ref = self.embed.weight
        dtype = dtype or ref.dtype
        device = device or ref.device
        layers = [b.mixer.new_cache(batch_size, max_len, dtype, device) for b in self.blocks]
        cache = ModelCache(layers, batch_size=batch_size, max_len=max_len)
        if static:
            cache.make_static()
        return cache

    def forward(self, input_ids: torch.Tensor, cache: ModelCache | None = None, *, positions: torch.Tensor | None = None,
                return_hidden: bool = False, targets: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, T] int64 token ids -> [B, T, V] logits (or [B, T, C] hidden states).

        With ``targets`` [B, T] (next-token ids, -100 = ignore) it returns the mean cross-entropy
        instead, through ``ops.cross_entropy``'s chunked form: the [B, T, V] float32 logits are
        never materialised (the training path).

        ``positions`` [B, T] is required with a static cache (CUDA-graph decoding) and is
        otherwise derived: 0..T-1 without a cache, continuing the cache's length with one.

        ``attention_mask`` [B, T] (1 = real token, 0 = pad) takes a left-padded batch: each row's
        first real token gets position 0 (pads negative positions), no real token attends to a
        pad, and pads never enter a recurrent state or convolution window, so every row's
        outputs at its real tokens are those of the row alone. With a cache it may only start
        an empty cache, which then remembers the padding for later calls (pass those without
        a mask). An all-ones mask is the unpadded path.
        """
        B, T = input_ids.shape if isinstance(input_ids, torch.Tensor) and input_ids.dim() == 2 else (0, 0)
        static = cache is not None and cache.static
        if not _capturing():
            self._check_ids(input_ids)
            if static and positions is None:
                raise ValueError("positions: a static cache needs explicit positions [batch, time]")
        mask = None if attention_mask is None else self._padding(attention_mask, input_ids, cache)
        if positions is None:
            if cache is not None:
                positions = cache.positions(B, T, input_ids.device)
            elif mask is not None:
                positions = torch.arange(T, device=input_ids.device)[None] - (~mask).sum(-1, keepdim=True)  # [B, T]
            else:
                positions = torch.arange(T, device=input_ids.device).expand(B, T)
        # pads sit at negative positions; absolute encodings give them position 0's vector
        abs_positions = positions if mask is None else positions.clamp(min=0)
        if not _capturing():
            self.input_position.check_positions(abs_positions)
        x = self.embed_input(input_ids, abs_positions)
        for i, block in enumerate(self.blocks):
            x = block(x, positions=positions, cache=cache.layers[i] if cache is not None else None, token_ids=input_ids,
                      mask=mask)
        if cache is not None and not static:
            cache.advance(T)
        if self.final_norm is not None:
            x = self.final_norm(x)
        if return_hidden:
            return x
        if targets is not None:
            return self._loss(x, targets)
        logits = nn.functional.linear(x, self.lm_head_weight, self.head.bias if self.head is not None else None)
        if self.cfg.logit_softcap is not None:
            c = self.cfg.logit_softcap
            logits = c * torch.tanh(logits / c)
        return logits

    def embed_input(self, input_ids: torch.Tensor, abs_positions: torch.Tensor) -> torch.Tensor:
        """[B, T] token ids (and their positions, >= 0) -> [B, T, C]: the embedding, its scale,
        absolute position vectors and the embedding norm, as the first block receives them."""
        x = self.embed(input_ids)
        if self.cfg.embed_scale is not None:
            x = x * torch.tensor(self.cfg.embed_scale, dtype=x.dtype)
        pe = self.input_position.embed(abs_positions)
        if pe is not None:
            x = x + pe.to(x.dtype)
        if self.embed_norm is not None:
            x = self.embed_norm(x)
        return x

    def _loss(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        from archlab.ops.cross_entropy import linear_cross_entropy

        if targets.shape != x.shape[:2]:
            raise ValueError(f"targets: expected shape {tuple(x.shape[:2])} (the input's [batch, time]), got {tuple(targets.shape)}")
        return linear_cross_entropy(x.flatten(0, 1), self.lm_head_weight, targets.flatten(),
                                    self.head.bias if self.head is not None else None, softcap=self.cfg.logit_softcap)

    def _padding(self, attention_mask: torch.Tensor, input_ids: torch.Tensor, cache: ModelCache | None
                 ) -> torch.Tensor | None:
        """Check a left-padding mask; returns it as bool [B, T], or None when nothing is padded
        (then the call is the unpadded one). Records the padding in an empty cache."""
        m = attention_mask
        if not isinstance(m, torch.Tensor) or m.shape != input_ids.shape:
            shape = tuple(m.shape) if isinstance(m, torch.Tensor) else type(m).__name__
            raise ValueError(f"attention_mask: expected a tensor of input_ids' shape {tuple(input_ids.shape)} "
                             f"(1 = real token, 0 = left padding), got {shape}")
        if m.dtype != torch.bool:
            if bool(((m != 0) & (m != 1)).any()):
                raise ValueError("attention_mask: values must be 0 (pad) or 1 (real token)")
            m = m != 0
        m = m.to(input_ids.device)
        if bool(m.all()):
            return None
        T = m.shape[1]
        n_pad = (~m).sum(-1)  # [B]
        if not bool(torch.equal(m, torch.arange(T, device=m.device)[None] >= n_pad[:, None])):
            raise ValueError("attention_mask: padding must be on the left (each row: 0s, then 1s); right padding "
                             "needs no mask with a causal model")
        if bool((n_pad == T).any()):
            raise ValueError(f"attention_mask: row {int((n_pad == T).nonzero()[0])} has no real token")
        if cache is not None:
            cache.set_padding(n_pad)
        return m

    def _check_ids(self, ids: torch.Tensor) -> None:
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype not in (torch.int64, torch.int32):
            shape = tuple(ids.shape) if isinstance(ids, torch.Tensor) else type(ids).__name__
            raise ValueError(f"input_ids: expected an int64 tensor of shape [batch, time], got {shape}"
                             f"{' ' + str(ids.dtype) if isinstance(ids, torch.Tensor) else ''}")
        if ids.shape[1] == 0:
            raise ValueError("input_ids: the time dimension is empty")
        if not torch.compiler.is_compiling():
            lo, hi = int(ids.min()), int(ids.max())  # one host sync; skipped under compile and graph capture
            if lo < 0 or hi >= self.cfg.vocab_size:
                raise ValueError(f"input_ids: token ids must lie in [0, {self.cfg.vocab_size}), got min {lo} max {hi}")

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())


def _capturing() -> bool:
    return torch.compiler.is_compiling() or (torch.cuda.is_available() and torch.cuda.is_current_stream_capturing())


def build(cfg: ModelConfig, *, device=None, dtype: torch.dtype | None = None) -> Model:
    """Build the model a config describes (float32 on the CPU unless told otherwise)."""
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"build: expected an archlab.ModelConfig, got {type(cfg).__name__}")
    if device is not None and torch.device(device).type == "meta":
        with torch.device("meta"):
            model = Model(cfg)
    else:
        model = Model(cfg)
        if device is not None:
            model = model.to(device)
    if dtype is not None:
        model = model.to(dtype)
    return model
