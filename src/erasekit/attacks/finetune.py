"""Fine-tune recovery (CopyrightMeter, 2024; "concept revival"): a LoRA (peft) on the UNet's
attention projections, trained for a few steps on concept images with their prompts, on top of
the erased model. The adapter is removed afterwards; the pipeline is left as it was.
"""

from __future__ import annotations

import time

import torch

from erasekit.attacks.base import ATTACKS, Attack, AttackContext, Counter, Outcome, Target
from erasekit.attacks.embedding import to_x0
from erasekit.losses import denoising_loss
from erasekit.pipelines import encode

ADAPTER = "erasekit_recovery"


@ATTACKS.register("finetune")
class FinetuneRecovery(Attack):
    """Fine-tune recovery: a rank-4 LoRA trained on a few concept images through the erased model."""

    threat_model = "weights: the attacker can fine-tune the released model"
    needs = "a few images of the concept with captions (the unedited model's reference images)"
    budget_unit = "gradient steps (one LoRA for all targets)"
    default_budget = 100
    order = 70
    test_budget = 25
    lora_rank = 4
    lr = 5e-3
    check_every = 25
    shared = True

    def attack_all(self, ctx: AttackContext, targets: list[Target], budget: int, gen: torch.Generator,
                   progress: bool) -> dict[int, Outcome]:
        from peft import LoraConfig
        from tqdm.auto import tqdm

        pipe = ctx.pipe
        unet = pipe.unet
        x0 = torch.cat([to_x0(t.reference) for t in targets])
        states = encode(pipe, [t.prompt for t in targets]).states
        req = {n: p.requires_grad for n, p in unet.named_parameters()}
        was = unet.training
        torch.manual_seed(int(torch.randint(2**31, (1,), generator=gen)))
        unet.add_adapter(LoraConfig(r=self.lora_rank, lora_alpha=self.lora_rank, init_lora_weights=True,
                                    target_modules=["to_q", "to_k", "to_v", "to_out.0"]), adapter_name=ADAPTER)
        counter = Counter()
        t0 = time.perf_counter()
        done: dict[int, Outcome] = {}
        last: dict[int, Outcome] = {}
        try:
            params = [p for n, p in unet.named_parameters() if "lora_" in n]
            unet.requires_grad_(False)
            for p in params:
                p.requires_grad_(True)
            opt = torch.optim.AdamW(params, lr=self.lr)
            with counter.on(pipe):
                for step in tqdm(range(budget), desc=self.name, disable=not progress):
                    unet.train()
                    loss = denoising_loss(unet, pipe.scheduler, x0, states, gen)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    if (step + 1) % self.check_every and step + 1 < budget:
                        continue
                    unet.eval()
                    for t in targets:
                        if t.index in done:
                            continue
                        img = ctx.generate(t.prompt, t.seed, t.noise)
                        verdict = ctx.judge_images(img[None])[0]
                        out = Outcome(t.index, t.prompt, t.seed, False, ctx.shows_concept(verdict), img, verdict,
                                      t.prompt, grad_steps=step + 1, note=f"step {step + 1}")
                        out.unet_evals = counter.evals
                        out.wall_seconds = round(time.perf_counter() - t0, 3)
                        if out.success:
                            out.adversarial = {n: p.detach().clone() for n, p in unet.named_parameters() if "lora_" in n}
                        (done if out.success else last)[t.index] = out
                    if len(done) == len(targets):
                        break
        finally:
            unet.unload_lora()
            for n, p in unet.named_parameters():
                p.requires_grad_(req.get(n, False))
            unet.train(was)
        return {**last, **done}
