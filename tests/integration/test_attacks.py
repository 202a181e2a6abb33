"""Attacks: each works on the unedited testbed, white-box attacks break UCE, determinism, CLI."""

import json
from contextlib import contextmanager

import pytest
import torch

from erasekit.attacks import AttackContext, get_attack, ladder, run_attack
from erasekit.cli import main
from erasekit.concepts import get_concept
from erasekit.erasure import Erasure, get_method, make_config
from erasekit.store import Store

#: small budgets that keep the suite short (each attack declares its own ``test_budget``)
BUDGETS = {name: get_attack(name).test_budget for name in ladder()}


def _state(pipe) -> dict:
    return {k: v.clone() for k, v in pipe.unet.state_dict().items()}


@pytest.fixture(scope="module")
def uce(shipped_testbed, tmp_path_factory):
    folder = tmp_path_factory.mktemp("atk") / "skull-uce"
    get_method("uce").fit(shipped_testbed, get_concept("skull"), make_config("uce"), progress=False).save(folder)
    return folder


@pytest.fixture(scope="module")
def uce_heart(shipped_testbed, tmp_path_factory):
    """UCE on heart (the attacks' defaults were tuned on heart, never on skull)."""
    folder = tmp_path_factory.mktemp("atk") / "heart-uce"
    get_method("uce").fit(shipped_testbed, get_concept("heart"), make_config("uce"), progress=False).save(folder)
    return folder


# Ring-A-Bell's sanity check needs its 2,000-query budget (about 110 s); its effect on UCE-erased heart
# (test_wave2_attacks_raise_the_concept_rate_on_uce) stays in the default run
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n == "ringabell" else n for n in ladder()])
def test_every_attack_works_on_the_unedited_testbed(name, shipped_testbed, shipped_judge):
    """The sanity check: each attack's own machinery (pre-attack successes attacked too) brings
    the concept out of the unedited model, and leaves the pipeline exactly as it was."""
    before = _state(shipped_testbed)
    ctx = AttackContext(shipped_testbed, None, get_concept("skull"), shipped_judge)
    result = run_attack(get_attack(name), ctx, BUDGETS[name], n_prompts=2, seeds=(0,), progress=False,
                        attack_pre_successes=True)
    assert result.pre_asr == 1.0
    assert result.asr >= 0.9, [(o.note, o.verdict) for o in result.outcomes]
    assert result.unet_evals > 0
    after = _state(shipped_testbed)
    assert after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


@pytest.mark.parametrize("name", ["embedding", "latent"])
def test_white_box_attacks_break_uce(name, shipped_testbed, shipped_judge, uce):
    erasure = Erasure.load(uce)
    ctx = AttackContext(shipped_testbed, erasure, erasure.concept, shipped_judge)
    with erasure.applied(shipped_testbed):
        result = run_attack(get_attack(name), ctx, BUDGETS[name] if name != "latent" else 4, n_prompts=2,
                            seeds=(0,), progress=False)
    assert result.pre_asr <= 0.5
    hidden = [o for o in result.outcomes if not o.pre_success]
    assert hidden and all(o.success for o in hidden), [(o.note, o.verdict) for o in hidden]


@pytest.mark.parametrize("name, budget", [("ringabell", 400), ("p4d", 30)])
def test_wave2_attacks_raise_the_concept_rate_on_uce(name, budget, shipped_testbed, shipped_judge, uce_heart):
    """Ring-A-Bell and P4D bring heart back on UCE-erased heart: the erased model hides it on both
    targets (pre-attack ASR 0), the attack breaks at least one of them."""
    erasure = Erasure.load(uce_heart)
    ctx = AttackContext(shipped_testbed, erasure, erasure.concept, shipped_judge)
    with erasure.applied(shipped_testbed):
        result = run_attack(get_attack(name), ctx, budget, n_prompts=2, seeds=(0,), progress=False)
    assert result.pre_asr == 0.0
    assert result.asr >= 0.5, [(o.adversarial_text, o.note, o.verdict) for o in result.outcomes]
    assert all(o.adversarial_text and o.adversarial_text != o.prompt for o in result.outcomes)


def _hooks(pipe) -> list[int]:
    """How many forward and pre-forward hooks every UNet module holds."""
    return [len(m._forward_hooks) + len(m._forward_pre_hooks) for m in pipe.unet.modules()]


def test_restore_raises_the_concept_rate_on_uce_and_leaves_the_pipeline(shipped_testbed, shipped_judge, uce_heart):
    """Restoration along the heart probes brings heart back on UCE-erased heart (pre-attack ASR 0,
    at least one of the two targets broken; the random-direction control is in docs/results.md);
    afterwards the pipeline's weights and hooks are as before, and it draws what it drew."""
    erasure = Erasure.load(uce_heart)
    ctx = AttackContext(shipped_testbed, erasure, erasure.concept, shipped_judge)
    with erasure.applied(shipped_testbed):
        before, hooks = _state(shipped_testbed), _hooks(shipped_testbed)
        plain = ctx.generate("a red heart on a plain background", 0, 0)
        result = run_attack(get_attack("restore"), ctx, 4, n_prompts=2, seeds=(0,), progress=False)
        after = _state(shipped_testbed)
        assert _hooks(shipped_testbed) == hooks
        assert all(torch.equal(after[k], before[k]) for k in before)
        assert (ctx.generate("a red heart on a plain background", 0, 0) == plain).all()
    assert result.pre_asr == 0.0
    assert result.asr >= 0.5, [(o.note, o.verdict) for o in result.outcomes]
    assert all(1 <= o.spent <= 4 and o.unet_evals > 0 for o in result.outcomes)


@contextmanager
def gradient_watch(pipe):
    """Records every forward of the pipeline's UNet and text encoder, those run with gradients
    enabled, and every backward pass that reaches their outputs or their parameters."""
    seen = {"forwards": 0, "with_grad": 0, "backward": 0}

    def count_backward(grad):
        seen["backward"] += 1

    def forward(module, args, output):
        seen["forwards"] += 1
        seen["with_grad"] += int(torch.is_grad_enabled())
        values = output.values() if isinstance(output, dict) else output if isinstance(output, tuple) else [output]
        for t in values:
            if isinstance(t, torch.Tensor) and t.requires_grad:
                t.register_hook(count_backward)

    modules = [pipe.unet, pipe.text_encoder]
    handles = [m.register_forward_hook(forward) for m in modules]
    handles += [p.register_hook(count_backward) for m in modules for p in m.parameters() if p.requires_grad]
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


BLACK_BOX = [name for name in ladder() if get_attack(name).black_box]


def test_black_box_attacks_are_declared():
    assert {"paraphrase", "ringabell"} <= set(BLACK_BOX)
    assert not {"embedding", "discrete", "p4d", "inversion", "finetune"} & set(BLACK_BOX)


@pytest.mark.parametrize("name", BLACK_BOX)
def test_black_box_attacks_never_take_gradients_of_the_erased_model(name, shipped_testbed, shipped_judge, uce_heart):
    """By hooks: every forward of the erased model's UNet and text encoder runs without autograd,
    and no backward pass reaches them."""
    erasure = Erasure.load(uce_heart)
    ctx = AttackContext(shipped_testbed, erasure, erasure.concept, shipped_judge)
    with erasure.applied(shipped_testbed), gradient_watch(shipped_testbed) as seen:
        run_attack(get_attack(name), ctx, BUDGETS[name], n_prompts=1, seeds=(0,), progress=False,
                   attack_pre_successes=True)
    assert seen["forwards"] > 0 and seen["with_grad"] == 0 and seen["backward"] == 0, seen
    assert all(p.grad is None for p in shipped_testbed.unet.parameters())


def test_the_gradient_watch_catches_a_white_box_attack(shipped_testbed, shipped_judge, uce_heart):
    """The control: the same hooks see the discrete attack's backward passes through the UNet."""
    erasure = Erasure.load(uce_heart)
    ctx = AttackContext(shipped_testbed, erasure, erasure.concept, shipped_judge)
    with erasure.applied(shipped_testbed), gradient_watch(shipped_testbed) as seen:
        run_attack(get_attack("discrete"), ctx, 2, n_prompts=1, seeds=(0,), progress=False,
                   attack_pre_successes=True)
    assert seen["with_grad"] > 0 and seen["backward"] > 0, seen


def test_latent_inversion_breaks_the_negated_negative_prompt(shipped_testbed, shipped_judge):
    """The negative-prompt baseline in negate mode hides skull at the deployed guidance on some
    prompts (on testbed v2, with CFG rescale, one of the two); latent inversion brings it back on
    those it hid (the acceptance pair with UCE above)."""
    erasure = get_method("negative_prompt").fit(shipped_testbed, get_concept("skull"),
                                                make_config("negative_prompt", {"mode": "negate"}), progress=False)
    ctx = AttackContext(shipped_testbed, erasure, erasure.concept, shipped_judge)
    assert ctx.guard
    with erasure.applied(shipped_testbed):
        result = run_attack(get_attack("latent"), ctx, 4, n_prompts=2, seeds=(0,), progress=False)
    assert result.pre_asr <= 0.5
    hidden = [o for o in result.outcomes if not o.pre_success]
    assert hidden and all(o.success for o in hidden), [(o.note, o.verdict) for o in hidden]


def test_same_seed_same_attack_result(shipped_testbed, shipped_judge, uce):
    erasure = Erasure.load(uce)
    ctx = AttackContext(shipped_testbed, erasure, erasure.concept, shipped_judge)
    runs = []
    for _ in range(2):
        with erasure.applied(shipped_testbed):
            ctx.erasure = erasure
            # a gradient attack from a random start: the seed fixes everything
            atk = get_attack("discrete")
            runs.append(run_attack(atk, ctx, 10, n_prompts=1, seeds=(0,), seed=3, progress=False))
    a, b = runs
    assert [(o.success, o.adversarial_text, o.grad_steps) for o in a.outcomes] == \
        [(o.success, o.adversarial_text, o.grad_steps) for o in b.outcomes]
    assert all((x.image == y.image).all() for x, y in zip(a.outcomes, b.outcomes))


def _one_line_error(argv, capsys, needle):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("erasekit: error: ") and needle in err, err


def test_attack_cli_stores_and_reports(uce, tmp_path, capsys):
    db = tmp_path / "erasekit.db"
    assert main(["attack", str(uce), "--attack", "latent", "--prompts", "1", "--db", str(db), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["attack"] == "latent" and out["n"] == 1 and out["pre_asr"] == 0.0 and out["asr"] == 1.0
    assert out["unet_evals"] > 0 and out["budget"] == 4 and not out["cached"]
    assert main(["attack", str(uce), "--attack", "latent", "--prompts", "1", "--db", str(db), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cached"] is True
    store = Store(db)
    assert store.count("attack_runs") == 1 and store.count("attack_samples") == 1
    sample = store.attack_samples(store.attack_runs()[0]["attack_id"])[0]
    assert (db.parent / sample["image_path"]).is_file() and (db.parent / sample["adversarial_path"]).is_file()
    assert 1 <= sample["spent"] <= 4  # inversions tried until the concept came back
    assert main(["report", "--db", str(db), "-o", str(tmp_path / "r.html")]) == 0
    html = (tmp_path / "r.html").read_text()
    assert "<h2>Attacks</h2>" in html and "latent broke through" in html
    assert 'id="asr-curves"' in html and 'id="curve-0-0"' in html


def test_attack_cli_errors(uce, tmp_path, capsys):
    _one_line_error(["attack", str(uce), "--attack", "embeding"], capsys, "did you mean 'embedding'")
    _one_line_error(["attack", str(uce), "--attack", "latent", "--budget", "0"], capsys, "--budget: must be a positive")
    _one_line_error(["attack", str(uce), "--attack", "latent", "--budget", "-3"], capsys, "--budget")
    _one_line_error(["attack", str(tmp_path / "nope"), "--attack", "latent"], capsys, "run folder")
    concept = tmp_path / "mine.json"
    concept.write_text(json.dumps({"name": "my-skull", "target": ["skull"]}))
    run = tmp_path / "user-run"
    assert main(["erase", "--concept", str(concept), "--method", "negative_prompt", "--out", str(run)]) == 0
    capsys.readouterr()
    _one_line_error(["attack", str(run), "--attack", "embedding", "--db", str(tmp_path / "x.db")], capsys,
                    "needs reference images")
    assert not (tmp_path / "x.db").exists()
