"""Fast greedy/sampled decoding: a static cache and, on CUDA, one CUDA graph per step.

At batch 1 a decode step reads every weight once and does little arithmetic, so it is
bound by memory bandwidth -- if the GPU is kept busy. Launching a few hundred small kernels
from Python per token leaves it idle most of the time; replaying a captured graph does not.
The static cache keeps every tensor shape and address fixed between steps, which capture needs.
"""
from __future__ import annotations

import torch

from archlab.generation import sample_next
from archlab.model import Model


class GraphDecoder:
    """Prefill once, then decode one token per step by replaying a captured graph.

    ``use_graph=False`` (or a CPU model) runs the same static-cache step eagerly. ``pack=True``
    packs the projections that share an input (q/k/v, gate/up: ``archlab.packing``) so each runs
    as one matrix-vector product; the model's parameters become views of the packed rows, which
    changes nothing else about the model (training, state dict, saving). ``fused=True`` runs the
    step of ``archlab.decode_fused`` (norms, SwiGLU and residual adds inside the Triton
    matrix-vector kernels; Llama-style models at batch 1; the projections are packed).
    """

    def __init__(self, model: Model, batch_size: int, max_len: int, *, use_graph: bool | None = None,
                 compile: bool | str = False, pack: bool = True, fused: bool = False):
        self.model = model.eval()
        if pack or fused:
            from archlab.packing import pack_projections

            pack_projections(model)
        dev = model.embed.weight.device
        self.device = dev
        self.use_graph = (dev.type == "cuda") if use_graph is None else use_graph
        if self.use_graph and dev.type != "cuda":
            raise ValueError("use_graph: CUDA graphs need the model on a CUDA device")
        self.cache = model.new_cache(batch_size, max_len, static=True)
        self.batch_size, self.max_len = batch_size, max_len
        self.length = 0
        self._tok = torch.zeros(batch_size, 1, dtype=torch.long, device=dev)
        self._pos = torch.zeros(batch_size, 1, dtype=torch.long, device=dev)
        step = self._step
        if fused:  # norms, SwiGLU and residual adds inside the matrix-vector kernels (decode_fused.py)
            from archlab.decode_fused import FusedStep, unsupported

            why = unsupported(model, batch_size)
            if why is not None:
                raise ValueError(f"fused: this model cannot use the fused decoding step: {why}")
            step = FusedStep(model, self.cache)
        # compile: True (inductor's default: fused norms, RoPE, SwiGLU and residuals around cuBLAS)
        # or a mode name; the graph is ours, so inductor's own CUDA graphs ("reduce-overhead") are not used
        if compile:
            mode = None if compile is True else compile
            if mode in ("reduce-overhead", "max-autotune"):
                raise ValueError(f"compile: {mode!r} captures its own CUDA graphs; use True, 'default' or "
                                 "'max-autotune-no-cudagraphs' (GraphDecoder captures the graph)")
            self._fn = torch.compile(step, mode=mode, fullgraph=True, dynamic=False)
        else:
            self._fn = step
        self._graph: torch.cuda.CUDAGraph | None = None
        self._out: torch.Tensor | None = None

    def _step(self, tok: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        return self.model(tok, cache=self.cache, positions=pos)[:, -1]

    @torch.no_grad()
    def prefill(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Process the prompt [B, T]; returns the last position's logits [B, V]."""
        B, T = input_ids.shape
        if T > self.max_len:
            raise ValueError(f"input_ids: {T} tokens exceed max_len={self.max_len}")
        pos = torch.arange(T, device=self.device).expand(B, T)
        logits = self.model(input_ids, cache=self.cache, positions=pos)[:, -1]
        self.length = T
        return logits

    def _capture(self) -> None:
        # warm up on a side stream (allocator and library handles), then capture one step
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(2):
                self._fn(self._tok, self._pos)
        torch.cuda.current_stream().wait_stream(s)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._out = self._fn(self._tok, self._pos)

    @torch.no_grad()
    def step(self, token: torch.Tensor) -> torch.Tensor:
        """Feed next tokens [B]; returns logits [B, V] (a buffer overwritten by the next step)."""
        if self.length >= self.max_len:
            raise ValueError(f"decode: max_len={self.max_len} reached")
        self._tok.copy_(token.view(-1, 1))
        self._pos.fill_(self.length)
        self.length += 1
        if not self.use_graph:
            return self._fn(self._tok, self._pos)
        if self._graph is None:
            # warm-up steps write the same position again, so they leave the cache as it will be
            self._capture()
        self._graph.replay()
        return self._out

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, **sampling) -> torch.Tensor:
        """Greedy by default; ``sampling`` takes temperature/top_k/top_p/generator as sample_next."""
        logits = self.prefill(input_ids)
        out = [input_ids]
        for i in range(max_new_tokens):
            nxt = sample_next(logits, **sampling)
            out.append(nxt[:, None])
            if i + 1 < max_new_tokens:
                logits = self.step(nxt)
        return torch.cat(out, 1)
