"""One module per transformers family; each registers itself in ``archlab.interop.base.FAMILIES``.

Every module here is imported on first use (``load_families``): adding a family is adding a file.
"""
