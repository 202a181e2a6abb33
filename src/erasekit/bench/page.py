"""The leaderboard section of the HTML report: a Jinja2 template and a matplotlib Pareto plot
(inline SVG, so the page stays one self-contained file)."""

from __future__ import annotations

from typing import Any

from erasekit.bench.leaderboard import LM_METRICS, METRICS, leaderboard
from erasekit.store import Store

HEADS = {"efficacy": "efficacy (given)", "efficacy_known": "known", "efficacy_known_disjoint": "known, no given word",
         "efficacy_unseen": "unseen", "efficacy_heldout_pairs": "held-out pairs", "ira": "IRA", "cra": "CRA",
         "fd_base": "FD vs unedited", "oracle_fd_target": "oracle gap (FD)"}
LM_HEADS = {"forget_acc": "forget acc.", "surrogate_acc": "surrogate phrasing", "unseen_acc": "unseen phrasing",
            "two_hop_acc": "two-hop", "forget_quality": "forget quality", "model_utility": "model utility",
            "privleak": "privleak (%)", "first_token_kl": "first-token KL"}


def pareto_svg(board: dict[str, Any]) -> str:
    """Efficacy under the strongest attack (1 - worst-case ASR) against IRA, per method and concept."""
    from erasekit.plots import figure

    markers = "osD^v<>Ph*"
    with figure(6.4, 4.2) as (fig, ax, out):
        for k, (concept, rows) in enumerate(board["concepts"].items()):
            pts = []
            for r in rows:
                ira, worst = r["metrics"].get("ira"), r["worst_attack"]
                if r["method"] is None or ira is None or worst is None:
                    continue
                pts.append((r["label"], ira, worst))
            for label, ira, worst in pts:
                x, y = ira["value"], 1 - worst["asr"]
                front = not any(o_ira["value"] >= x and 1 - o_w["asr"] >= y and (o_ira["value"], 1 - o_w["asr"]) != (x, y)
                                for _, o_ira, o_w in pts)
                xerr = [[max(0.0, x - ira["ci95"][0])], [max(0.0, ira["ci95"][1] - x)]] if ira.get("ci95") else None
                yerr = [[max(0.0, y - (1 - worst["ci95"][1]))], [max(0.0, (1 - worst["ci95"][0]) - y)]]
                bars = ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt=markers[k % len(markers)], color=f"C{k}", alpha=0.9,
                                   markerfacecolor=f"C{k}" if front else "white", capsize=2, lw=0.8)
                bars.lines[0].set_gid(f"pareto-{board['bench']}-{concept}-{label}")
                ax.annotate(f"{label}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            ax.plot([], [], markers[k % len(markers)], color=f"C{k}", label=concept)
        ax.set_xlabel("in-domain retention (IRA)")
        ax.set_ylabel("efficacy under the strongest attack (1 - ASR)")
        ax.set_xlim(-0.05, 1.05)
        ax.set_ylim(-0.05, 1.05)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    return out[0]


def leaderboard_html(store: Store, bench: str) -> str:
    """The rendered leaderboard section for one bench."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    board = leaderboard(store, bench)
    env = Environment(loader=PackageLoader("erasekit", "templates"), autoescape=select_autoescape(["j2", "html"]))
    present = {k for rows in board["concepts"].values() for r in rows for k in r["metrics"]}
    attacks = list(dict.fromkeys(a for rows in board["concepts"].values() for r in rows for a in r["attacks"]))
    seeds = sorted({s for group in ("concepts", "tasks") for rows in board[group].values() for r in rows
                    for s in r["seeds"]})
    lm_present = {k for rows in board["tasks"].values() for r in rows for k in r["metrics"]}
    lm_attacks = list(dict.fromkeys(a for rows in board["tasks"].values() for r in rows for a in r["attacks"]))
    return env.get_template("leaderboard.html.j2").render(
        board=board, metric_heads={k: HEADS[k] for k in METRICS if k in present}, attacks=attacks, seeds=seeds,
        pareto=pareto_svg(board) if board["concepts"] else "",
        lm_heads={k: LM_HEADS[k] for k in LM_METRICS if k in lm_present}, lm_attacks=lm_attacks)
