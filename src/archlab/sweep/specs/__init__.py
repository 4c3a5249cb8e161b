"""Built-in sweep specs (YAML files read by ``archlab.sweep.load_spec``)."""
