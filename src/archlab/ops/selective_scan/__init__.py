"""Mamba-1 selective scan: sequential reference, chunked fast form (hand-written backward), decode step."""
from archlab.ops.selective_scan.chunked import selective_scan_chunked
from archlab.ops.selective_scan.reference import selective_scan_reference
from archlab.ops.selective_scan.step import selective_scan_step

__all__ = ["selective_scan_chunked", "selective_scan_reference", "selective_scan_step"]
