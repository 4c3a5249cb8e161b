"""Causal depthwise conv1d (the short convolution of Mamba and Mamba-2): reference loop and F.conv1d path."""
from archlab.ops.causal_conv1d.conv import causal_conv1d
from archlab.ops.causal_conv1d.reference import causal_conv1d_reference

__all__ = ["causal_conv1d", "causal_conv1d_reference"]
