"""SSMConfig: validation names the field, kind-specific fields are rejected for the other kind, round trip."""
import pytest

from archlab.errors import ConfigError
from archlab.ssm import SSMConfig


def test_defaults_and_dims():
    d = SSMConfig().dims(100)
    assert (d.d_inner, d.d_state, d.dt_rank, d.conv_dim, d.in_proj_dim) == (200, 16, 7, 200, 400)
    d2 = SSMConfig(kind="mamba2", d_state=128, n_groups=2).dims(256)
    assert (d2.heads, d2.head_dim, d2.groups, d2.conv_dim) == (8, 64, 2, 512 + 2 * 2 * 128)
    assert d2.in_proj_dim == 512 + d2.conv_dim + 8
    assert SSMConfig().chunk == 16 and SSMConfig(kind="mamba2").chunk == 64 and SSMConfig(chunk_size=5).chunk == 5


@pytest.mark.parametrize("kwargs,field", [
    ({"d_state": 0}, "ssm.d_state"),
    ({"expand": -1}, "ssm.expand"),
    ({"dt_rank": 0}, "ssm.dt_rank"),
    ({"chunk_size": 0}, "ssm.chunk_size"),
    ({"norm_eps": 0.0}, "ssm.norm_eps"),
    ({"dt_min": 0.5, "dt_max": 0.1}, "ssm.dt_min"),
    ({"kind": "mamba", "head_dim": 32}, "ssm.head_dim"),
    ({"kind": "mamba", "n_groups": 2}, "ssm.n_groups"),
    ({"kind": "mamba", "dt_limit": (0.0, 1.0)}, "ssm.dt_limit"),
    ({"kind": "mamba2", "dt_rank": 8}, "ssm.dt_rank"),
    ({"kind": "mamba2", "dt_bc_norm": True}, "ssm.dt_bc_norm"),
    ({"kind": "mamba2", "dt_limit": (1.0, 0.5)}, "ssm.dt_limit"),
    ({"kind": "mamba2", "dt_limit": (0.0, 0.5, 1.0)}, "ssm.dt_limit"),
    ({"kind": "mamba3"}, "ssm.kind"),
])
def test_bad_values_name_their_field(kwargs, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        SSMConfig(**kwargs)


def test_sizes_that_do_not_divide():
    with pytest.raises(ConfigError, match=r"ssm\.head_dim"):
        SSMConfig(kind="mamba2", head_dim=48).dims(64)
    with pytest.raises(ConfigError, match=r"ssm\.n_groups"):
        SSMConfig(kind="mamba2", head_dim=16, n_groups=3).dims(64)
    with pytest.raises(ConfigError, match="d_model"):
        SSMConfig().dims(0)


def test_round_trip_and_unknown_keys():
    cfg = SSMConfig(kind="mamba2", d_state=64, head_dim=32, n_groups=2, dt_limit=(0.0, 10.0))
    assert SSMConfig.from_dict(cfg.to_dict()) == cfg
    assert SSMConfig.from_json(cfg.to_json()) == cfg
    with pytest.raises(ConfigError, match="d_stat"):
        SSMConfig.from_dict({"d_stat": 4})
