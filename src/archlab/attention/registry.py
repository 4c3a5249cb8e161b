"""The attention registry (``attention.kind``)."""
from archlab.registry import Registry

ATTENTION: Registry = Registry("attention.kind")
