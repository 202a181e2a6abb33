"""Adding a method, an attack or a metric is one new file: registered from a module outside
erasekit, each shows up in the CLI listing, runs in the evaluation / attack, and reaches the report."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap

import pytest

from erasekit.attacks import ATTACKS
from erasekit.cli import main
from erasekit.concepts import get_concept
from erasekit.erasure import METHODS, Erasure
from erasekit.evaluation import EvalConfig, evaluate
from erasekit.metrics import METRICS
from erasekit.redteam import attack
from erasekit.report import build_report
from erasekit.store import Store

PLUGIN = textwrap.dedent('''
    """A third-party plugin: one method, one attack, one metric."""
    from dataclasses import dataclass

    import torch

    from erasekit.attacks.base import ATTACKS, Attack, Outcome, measured
    from erasekit.erasure import METHODS, Erasure, Method, MethodConfig
    from erasekit.metrics.base import METRICS, Metric, Value, mean_value
    from erasekit.pipelines import fingerprint


    @dataclass(frozen=True)
    class NoopConfig(MethodConfig):
        scale: float = 1.0

        def __post_init__(self) -> None:
            self.check_types()


    @METHODS.register("plugin_noop")
    class PluginNoop(Method):
        """Plugin no-op: keeps every weight (a registration check)."""

        config_class = NoopConfig
        group = "xattn_kv"

        def fit(self, pipe, concept, config, progress=True):
            return Erasure(self.name, config, concept, fingerprint(pipe), {})


    @ATTACKS.register("plugin_replay")
    class PluginReplay(Attack):
        """Plugin replay: the unattacked prompt once more (a registration check)."""

        threat_model = "black-box: prompt access only"
        budget_unit = "prompts tried"
        default_budget = 1
        order = 5
        test_budget = 1

        def attack(self, ctx, target, budget, gen):
            def run(counter):
                img = ctx.generate(target.prompt, target.seed, target.noise)
                verdict = ctx.judge_images(img[None])[0]
                return Outcome(target.index, target.prompt, target.seed, False, ctx.shows_concept(verdict), img,
                               verdict, target.prompt)

            return measured(ctx, run)


    @METRICS.register("plugin_brightness")
    class PluginBrightness(Metric):
        """Plugin brightness: mean pixel value of every image (a registration check)."""

        order = 45
        report = {"brightness": "plugin brightness"}

        def compute(self, answers):
            v = mean_value(answers, lambda p: True, lambda p, j: float(answers.images[j].mean()) / 255)
            return {"brightness": v}
''')


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "erasekit_plugin_demo.py").write_text(PLUGIN)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("erasekit_plugin_demo"), folder
    finally:
        sys.path.remove(str(folder))
        sys.modules.pop("erasekit_plugin_demo", None)
        METHODS.unregister("plugin_noop")
        ATTACKS.unregister("plugin_replay")
        METRICS.unregister("plugin_brightness")


def test_plugin_components_are_listed(plugin, capsys):
    for verb, name in (("methods", "plugin_noop"), ("attacks", "plugin_replay"), ("metrics", "plugin_brightness")):
        assert main([verb]) == 0
        assert name in capsys.readouterr().out


def test_plugin_components_run_and_reach_the_report(plugin, shipped_testbed, shipped_judge, tmp_path, capsys):
    out = tmp_path / "noop"
    assert main(["erase", "--concept", "skull", "--method", "plugin_noop", "--out", str(out)]) == 0
    erasure = Erasure.load(out)
    store = Store(tmp_path / "r.db")
    cfg = EvalConfig(n_prompts=1, seeds=(0,), steps=2)
    result = evaluate(store, shipped_testbed, shipped_judge, get_concept("skull"), cfg, erasure, out, progress=False)
    assert 0 < result["metrics"]["brightness"]["value"] < 1
    atk = attack(store, shipped_testbed, shipped_judge, get_concept("skull"), "plugin_replay", erasure=erasure,
                 artifact_dir=out, n_prompts=1, progress=False)
    assert atk["attack"] == "plugin_replay" and atk["n"] >= 0
    build_report(store, tmp_path / "report.html")
    html = (tmp_path / "report.html").read_text()
    assert "plugin brightness" in html and "plugin_replay" in html and "plugin_noop" in html


def test_plugins_load_from_the_environment(plugin):
    """A user names the module in $ERASEKIT_PLUGINS; a fresh process lists its method."""
    env = {**os.environ, "ERASEKIT_PLUGINS": "erasekit_plugin_demo",
           "PYTHONPATH": os.pathsep.join([str(plugin[1]), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "erasekit", "methods"], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "plugin_noop" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "erasekit", "methods"], capture_output=True, text=True,
                         env={**env, "ERASEKIT_PLUGINS": "no_such_module_xyz"}, timeout=300)
    assert bad.returncode == 2 and "no_such_module_xyz" in bad.stderr and len(bad.stderr.splitlines()) == 1
