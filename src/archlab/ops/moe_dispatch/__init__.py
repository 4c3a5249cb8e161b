"""Mixture-of-experts expert computation: route rows to experts, run them, add back with weights.

``reference.expert_ffn`` loops over experts; ``grouped.expert_ffn`` sorts by expert and runs one
grouped matmul per projection (``torch._grouped_mm``, or a padded ``torch.bmm``). Same signature.
"""
from archlab.ops.moe_dispatch.grouped import expert_ffn as expert_ffn_grouped
from archlab.ops.moe_dispatch.grouped import grouped_mm_support, resolve_backend
from archlab.ops.moe_dispatch.reference import expert_ffn as expert_ffn_reference

__all__ = ["expert_ffn_reference", "expert_ffn_grouped", "grouped_mm_support", "resolve_backend"]
