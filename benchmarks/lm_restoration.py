"""The SAE restoration attack's settings: alpha and the number of expert features, per method.

    python benchmarks/lm_restoration.py [--models runs/lm/models] [--methods graddiff,simnpo]
        [--settings 1:32,1:128,5:32,5:128,10:32] [--threads 1]

Fits each method on TinyTOFU seed 0 (the tiny target in ``--models``/full, trained there if
missing), then runs ``sae_restore`` at each ``alpha:features`` setting and prints the restored
forget accuracy next to the same number of random features (docs/results.md, SAE restoration).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from erasekit.lm import model as M
from erasekit.lm.attacks.base import get_lm_attack
from erasekit.lm.methods.base import get_lm_method, make_lm_config
from erasekit.lm.tasks import Forget, get_task


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="runs/lm/models")
    ap.add_argument("--methods", default="graddiff,simnpo")
    ap.add_argument("--settings", default="1:32,1:128,5:32,5:128,10:32")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    full = M.ensure_tiny(Path(args.models) / "full", 0)
    spec = Forget("tinytofu", 0)
    task = get_task(spec)
    settings = [tuple(float(x) for x in s.split(":")) for s in args.settings.split(",")]
    print("| method | alpha | features | restored | random features |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.methods.split(","):
        art = get_lm_method(name).fit(full, spec, make_lm_config(name, {}), progress=False)
        lm = M.clone(full)
        for alpha, n in settings:
            atk = get_lm_attack("sae_restore")
            atk.alpha = alpha
            with art.applied(lm):
                v = atk.run(lm, task, None, int(n), 0, base=full)
            print(f"| {name} | {alpha:g} | {int(n)} | {v['sae_restore_acc'].value:.2f} | "
                  f"{v['sae_restore_random_acc'].value:.2f} |", flush=True)


if __name__ == "__main__":
    main()
