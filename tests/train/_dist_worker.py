"""Run under torchrun by test_train_distributed.py: DDP and FSDP2 runs of a tiny model (gloo, CPU),
and an FSDP2 resume of a one-process checkpoint.

    torchrun --nproc_per_node 2 tests/train/_dist_worker.py OUT_DIR
"""
import json
import sys
from pathlib import Path

import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).parent))
from _train_helpers import tiny_data, tiny_run  # noqa: E402

from archlab.train import train  # noqa: E402

out = Path(sys.argv[1])
dist.init_process_group("gloo")  # started here, so each train() call reuses it
results = {}
for mode in ("ddp", "fsdp"):
    run = tiny_run(steps=4, distributed=mode, save_every=2, eval_every=4, grad_accum=2)
    r = train(run, out / mode, dataset=tiny_data(), progress=False, say=lambda s: None)
    results[mode] = {"losses": r.losses, "val": r.val_losses[4], "ckpt": str(r.last_checkpoint)}
# a one-process checkpoint (step 2, prepared by the test) continued by two FSDP2 processes
r = train(tiny_run(steps=4, distributed="fsdp", save_every=2, eval_every=4), out / "grow", dataset=tiny_data(),
          progress=False, say=lambda s: None, resume=True)
results["grow"] = {"losses": r.losses, "start": r.start_step}
if dist.get_rank() == 0:
    (out / "results.json").write_text(json.dumps(results))
dist.destroy_process_group()
