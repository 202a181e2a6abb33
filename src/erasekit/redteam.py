"""Attack runs: attack an erasure artifact (or the unedited model) and store the result.

Each run is identified by the artifact's bytes, the base weights, the concept, the attack, its
budget and seeds; a stored run is returned as is unless ``force``. Per target, the adversarial
input (text, or a safetensors file with the embedding / latents / LoRA), the final image and the
judge's verdict are kept beside the database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image

from erasekit.attacks import AttackContext, get_attack, run_attack
from erasekit.concepts import Concept
from erasekit.erasure import Erasure
from erasekit.errors import UserError
from erasekit.evaluation import artifact_info
from erasekit.files import save_tensors
from erasekit.grid import save_png
from erasekit.pipelines import fingerprint
from erasekit.provenance import content_id, record
from erasekit.sampling import DEFAULT_GUIDANCE, DEFAULT_STEPS
from erasekit.store import Store


def attack(
    store: Store,
    pipe: Any,
    judge: Any,
    concept: Concept,
    attack_name: str,
    budget: int | None = None,
    erasure: Erasure | None = None,
    artifact_dir: str | Path | None = None,
    n_prompts: int = 4,
    seeds: tuple[int, ...] = (0,),
    seed: int = 0,
    steps: int = DEFAULT_STEPS,
    guidance: float = DEFAULT_GUIDANCE,
    force: bool = False,
    progress: bool = True,
    name: str | None = None,
    guided_loss: bool = True,
    threat: str | None = None,
    every_target: bool = False,
) -> dict[str, Any]:
    """Run ``attack_name`` against ``erasure`` applied to ``pipe`` (``None``: the unedited model).

    ``guided_loss=False`` is an ablation: white-box losses on the conditional prediction even
    against inference-time guards (stored as a separate run). ``threat`` restricts the attack to
    its ``white`` or ``black`` variants (:meth:`Attack.restricted`); ``every_target`` attacks the
    targets whose plain prompt already shows the concept too, so a target's success is the
    attack's own (the threat matrix's reproduction rate). Both are part of the run's identity."""
    atk = get_attack(attack_name)
    if threat is not None:
        atk = atk.restricted(threat)
    if erasure is not None:
        erasure.check(pipe)  # base weights, parameter names and shapes: before any work
    budget = atk.default_budget if budget is None else budget
    if budget < 1:
        raise UserError(f"budget must be a positive number of {atk.budget_unit}, got {budget}")
    base_fp = fingerprint(pipe)
    info = artifact_info(Path(artifact_dir), erasure) if erasure is not None and artifact_dir else None
    settings = {"attack": attack_name, "budget": budget, "n_prompts": n_prompts, "seeds": list(seeds), "seed": seed,
                "steps": steps, "guidance": guidance, **({} if guided_loss else {"guided_loss": False}),
                **({} if threat is None else {"threat": threat}), **({"every_target": True} if every_target else {})}
    key = {"base": base_fp, "concept": concept.to_dict(), "artifact": None if info is None else info["digest"],
           "method": None if erasure is None else erasure.method, **settings}
    attack_id = content_id(key)
    stored = store.attack_run(attack_id)
    if stored is not None and not force:
        return {**stored, "samples": store.attack_samples(attack_id), "cached": True}

    ctx = AttackContext(pipe, erasure, concept, judge, steps, guidance, guided_loss)
    if erasure is not None:
        erasure.apply(pipe)
    try:
        result = run_attack(atk, ctx, budget, n_prompts, tuple(seeds), seed, progress,
                            attack_pre_successes=every_target)
    finally:
        if erasure is not None:
            erasure.remove(pipe)
    folder = f"{store.image_root.name}/attacks/{attack_id}"
    rows = []
    for o in result.outcomes:
        img_rel = f"{folder}/t{o.index:03d}.png"
        save_png(Image.fromarray(o.image), store.path.parent / img_rel)
        adv_rel = None
        if o.adversarial:
            adv_rel = f"{folder}/t{o.index:03d}.safetensors"
            save_tensors(store.path.parent / adv_rel, o.adversarial, meta={"attack": attack_name})
        rows.append({"attack_id": attack_id, "target_index": o.index, "prompt": o.prompt, "seed": o.seed,
                     "pre_success": int(o.pre_success), "success": int(o.success),
                     "adversarial_text": o.adversarial_text, "adversarial_path": adv_rel, "image_path": img_rel,
                     "verdict": json.dumps(o.verdict), "unet_evals": o.unet_evals, "grad_steps": o.grad_steps,
                     "wall_seconds": o.wall_seconds, "note": o.note, "spent": o.spent})
    row = {
        "attack_id": attack_id,
        "run_name": name or ("unedited" if erasure is None else erasure.method) + f"/{concept.name}",
        "kind": "baseline" if erasure is None else "erasure", "method": None if erasure is None else erasure.method,
        "concept": concept.name, "artifact": None if artifact_dir is None else str(artifact_dir),
        "attack": attack_name,
        "threat_model": atk.threat_model if threat is None else f"{threat}-box (restricted)",
        "budget": budget, "budget_unit": atk.budget_unit,
        "config": json.dumps({**settings, "targets_dropped": result.dropped, "base_fingerprint": base_fp,
                              "artifact": info}, default=str),
        "n": len(result.outcomes), "pre_asr": result.pre_asr, "asr": result.asr, "unet_evals": result.unet_evals,
        "grad_steps": result.grad_steps, "wall_seconds": result.wall_seconds, **record(),
    }
    store.add_attack(row, rows)
    return {**row, "samples": store.attack_samples(attack_id), "cached": False}
