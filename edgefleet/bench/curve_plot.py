"""The fallback curve as a PNG (`bench/fallback_curve.py --plot`); needs matplotlib (`edgefleet[docs]`)."""

from __future__ import annotations

from pathlib import Path

from edgefleet.bench.fallback_curve import CurveResult
from edgefleet.errors import EdgefleetError

__all__ = ["plot_curve"]


def plot_curve(
    result: CurveResult, out: Path, *, goal_share: float, goal_points: float, chosen: float | None = None
) -> Path:
    """Accuracy against the share sent; ``chosen`` (the validated threshold) is ringed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise EdgefleetError(
            "writing the curve needs matplotlib", hint="pip install 'edgefleet[docs]'"
        ) from exc
    points = sorted(result.points, key=lambda p: p.cloud_share)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.axhline(
        result.cloud_only, color="tab:green", linestyle="--", label=f"cloud only {result.cloud_only:.3f}"
    )
    ax.axhline(result.edge_only, color="tab:red", linestyle="--", label=f"edge only {result.edge_only:.3f}")
    ax.fill_between(
        [0, goal_share],
        result.cloud_only - goal_points,
        max(result.cloud_only, max(p.accuracy for p in points)) + 0.005,
        color="tab:green",
        alpha=0.12,
        label=f"goal: <= {goal_share:.0%} sent, within {goal_points * 100:.0f} pt",
    )
    ax.plot(
        [p.cloud_share for p in points],
        [p.accuracy for p in points],
        marker="o",
        color="tab:blue",
        label="confidence policy (stored results)",
    )
    for p in points:
        if p.threshold == chosen:
            ax.plot(
                [p.cloud_share],
                [p.accuracy],
                marker="o",
                markersize=12,
                markerfacecolor="none",
                color="black",
                linestyle="none",
                label=f"threshold {p.threshold:g}, chosen on validation subjects",
            )
        if 0.0 < p.cloud_share < 1.0:
            ax.annotate(
                f"{p.threshold:g}",
                (p.cloud_share, p.accuracy),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
            )
    ax.set_xlabel("share of windows sent to the cloud")
    ax.set_ylabel("window accuracy (held-out subjects 9, 10)")
    ax.set_title(f"Cloud fallback on {result.windows} held-out watch windows")
    ax.set_xlim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
