"""The shadow run's verdict (pure logic): each limit refuses with its figure and the limit."""

from __future__ import annotations

from edgefleet.agent.ota_shadow import ShadowLimits, ShadowStats, judge


def stats(agree: int, disagree: int, candidate: float, active: float, ms: tuple[float, float]) -> ShadowStats:
    s = ShadowStats()
    n = agree + disagree
    s.add(
        ["a"] * n,
        [active] * n,
        ["a"] * agree + ["b"] * disagree,
        [candidate] * n,
        active_ms=ms[0],
        candidate_ms=ms[1],
    )
    return s


def test_a_candidate_that_answers_like_the_active_model_passes() -> None:
    s = stats(40, 0, 0.9, 0.9, (2.0, 2.0))
    assert judge(s, ShadowLimits(), 10.0) is None
    m = s.metrics()
    assert (m["windows"], m["agreement"], m["confidence_ratio"], m["latency_ratio"]) == (40, 1.0, 1.0, 1.0)


def test_low_agreement_is_refused_naming_the_figure_and_the_limit() -> None:
    verdict = judge(stats(20, 20, 0.9, 0.9, (2.0, 2.0)), ShadowLimits(), 10.0)
    assert verdict == "agreement 0.50 with the active model (at least 0.8)"


def test_low_confidence_is_refused() -> None:
    verdict = judge(stats(40, 0, 0.3, 0.9, (2.0, 2.0)), ShadowLimits(), 10.0)
    assert verdict == "mean confidence 0.300 vs the active model's 0.900 (at least 0.8x required)"


def test_latency_limits_apply_only_when_configured() -> None:
    slow = stats(40, 0, 0.9, 0.9, (2.0, 9.0))
    assert judge(slow, ShadowLimits(), 10.0) is None
    verdict = judge(slow, ShadowLimits(max_latency_ratio=2.0, max_latency_ms=5.0), 10.0)
    assert (
        verdict
        == "p95 batch latency 4.50x the active model's (at most 2x); p95 batch latency 9.0 ms (at most 5 ms)"
    )


def test_too_few_windows_is_refused_with_a_hint() -> None:
    verdict = judge(stats(5, 0, 0.9, 0.9, (2.0, 2.0)), ShadowLimits(min_windows=20), 3.0)
    assert verdict is not None
    assert verdict.startswith("only 5 windows compared in 3 s (at least 20 needed; hint: ")


def test_candidate_inference_errors_are_refused_first() -> None:
    s = stats(40, 0, 0.9, 0.9, (2.0, 2.0))
    s.errors, s.last_error = 10, "ModelError: boom"
    verdict = judge(s, ShadowLimits(), 10.0)
    assert verdict == (
        "the candidate failed inference on 10 of 50 shadowed windows (at most 5% allowed): ModelError: boom"
    )


def test_regression_models_without_labels_are_judged_on_windows_and_latency_only() -> None:
    s = ShadowStats()
    s.add([None] * 30, [None] * 30, [None] * 30, [None] * 30, active_ms=1.0, candidate_ms=1.0)
    assert s.metrics()["agreement"] is None
    assert judge(s, ShadowLimits(), 10.0) is None
