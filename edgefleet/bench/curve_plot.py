"""The fallback curve as a PNG (`bench/fallback_curve.py --plot`); needs matplotlib (`edgefleet[docs]`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from edgefleet.bench.fallback_curve import CurveResult
from edgefleet.errors import EdgefleetError

__all__ = ["plot_curve"]


_STYLES = {
    "confidence": ("tab:blue", "o", "-"),
    "margin": ("tab:orange", "s", "-"),
    "entropy": ("tab:purple", "^", "-"),
    "target_share:confidence": ("tab:blue", "D", ":"),
    "target_share:margin": ("tab:orange", "D", ":"),
    "target_share:entropy": ("tab:purple", "D", ":"),
}


def plot_curve(
    result: CurveResult,
    out: Path,
    *,
    goal_share: float,
    goal_points: float,
    chosen: Sequence[tuple[str, float]] = (),
) -> Path:
    """Accuracy against the share sent, one line per policy; ``chosen`` (the settings fixed on
    validation subjects) are ringed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise EdgefleetError(
            "writing the curve needs matplotlib", hint="pip install 'edgefleet[docs]'"
        ) from exc
    fig, ax = plt.subplots(figsize=(7.2, 4.8), dpi=120)
    ax.axhline(
        result.cloud_only, color="tab:green", linestyle="--", label=f"cloud only {result.cloud_only:.3f}"
    )
    ax.axhline(result.edge_only, color="tab:red", linestyle="--", label=f"edge only {result.edge_only:.3f}")
    top = max(result.cloud_only, max(p.accuracy for p in result.points)) + 0.005
    ax.fill_between(
        [0, goal_share],
        result.cloud_only - goal_points,
        top,
        color="tab:green",
        alpha=0.12,
        label=f"goal: <= {goal_share:.0%} sent, within {goal_points * 100:.0f} pt",
    )
    policies = list(dict.fromkeys(p.policy for p in result.points))
    for policy in policies:
        # Each policy's line runs from edge-only to cloud-only through its own points.
        ends = [q for q in result.points if q.policy == "confidence" and q.threshold in (0.0, 1.0)]
        points = sorted([q for q in result.points if q.policy == policy] + ends, key=lambda q: q.cloud_share)
        color, marker, line = _STYLES.get(policy, ("tab:gray", "o", "-"))
        ax.plot(
            [q.cloud_share for q in points],
            [q.accuracy for q in points],
            marker=marker,
            markersize=4,
            color=color,
            linestyle=line,
            label=f"{policy} (fixed threshold)" if ":" not in policy else policy.replace(":", ", score "),
        )
    rings = [p for p in result.points if (p.policy, p.threshold) in set(chosen)]
    for p in rings:
        ax.plot(
            [p.cloud_share],
            [p.accuracy],
            marker="o",
            markersize=12,
            markerfacecolor="none",
            color="black",
            linestyle="none",
        )
        ax.annotate(
            f"{p.policy} {p.threshold:g}\n(chosen on validation)",
            (p.cloud_share, p.accuracy),
            textcoords="offset points",
            xytext=(10, -22),
            fontsize=7,
        )
    ax.set_xlabel("share of windows sent to the cloud")
    ax.set_ylabel("window accuracy (held-out subjects 9, 10)")
    ax.set_title(f"Cloud fallback on {result.windows} held-out watch windows")
    ax.set_xlim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
