"""What ``edgefleet model bench`` reports: every path's figures and the ratios to the bare loop."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["TARGET_RATIO", "BenchReport", "LatencyStats", "PathResult"]

TARGET_RATIO = 0.95
"""edgefleet's path over the bare loop, for models that do real work per window."""


class LatencyStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float


class PathResult(BaseModel):
    """One path's totals over all its rounds."""

    model_config = ConfigDict(extra="forbid")

    name: str
    description: str
    batches: int
    windows: int
    seconds: float
    windows_per_s: float
    latency: LatencyStats
    cpu_us_per_window: float | None = None
    """Process CPU time (every thread, the runtime's included) per window, in microseconds."""


class BenchReport(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_path: str
    format: str
    backend: str
    runtime: str
    batch: int
    input_shape: list[int]
    """One sample's shape (the input's shape without the batch axis)."""
    windowed: bool
    """True for a (batch, window_length, channels) input: the stream paths were measured."""
    window_length: int | None = None
    channels: int | None = None
    hop: int | None = None
    push_chunk: int | None = None
    threads: int | None
    rounds: int
    bare: PathResult
    predict: PathResult
    edgefleet: PathResult | None = None
    """The agent-structured path: a producer thread pushing, the measuring thread batching and predicting
    (windowed models only)."""
    edgefleet_inline: PathResult | None = None
    """The same work with the producer inline in the measuring thread (no overlap)."""
    bare_prequantized: PathResult | None = None
    """The bare loop on pre-quantized input (integer-input models only): extra information."""
    dropped: int = 0
    """Samples the threaded path's buffer dropped (``block`` policy: must be 0)."""
    consumer_cpu_us_per_window: float | None = None
    """The threaded path's measuring thread alone (next_batch + predict, the runtime's worker threads
    not included): CPU us per window. With one runtime thread and a core of its own for the
    producer, bare's CPU per window over this bounds the ratio."""
    ratio: float
    """edgefleet (threaded) windows/s over bare windows/s, or predict over bare for a model that is
    not windowed: the figure the target applies to."""
    inline_ratio: float | None = None
    """edgefleet-inline windows/s over bare windows/s: information, beside the target figure."""
    predict_ratio: float
    """Model.predict alone over bare: the share of the gap that is the model wrapper's."""
    median_ratio: float
    """bare p50 batch latency over edgefleet's (predict's when not windowed): stalls left out."""
    prequantized_ratio: float | None = None
    """edgefleet windows/s over the pre-quantized bare loop's (integer-input models only)."""
    target_ratio: float = TARGET_RATIO
    meets_target: bool
    """``ratio >= target_ratio`` with nothing dropped."""

    def _per_window_us(self, slower: PathResult, faster: PathResult) -> float:
        return (slower.latency.p50_ms - faster.latency.p50_ms) * 1e3 / self.batch

    def render_text(self) -> str:
        ours = self.edgefleet
        if ours is None:
            return self._render_not_windowed()
        threads = "runtime default" if self.threads is None else str(self.threads)
        lines = [
            f"model bench: {self.model_path} ({self.format}, {self.runtime})",
            f"  batch {self.batch}, windows {self.window_length}x{self.channels}, hop {self.hop}, "
            f"pushed in blocks of {self.push_chunk} samples, threads {threads}, "
            f"{self.rounds} alternating rounds",
            "",
            f"  {'path':<17}{'windows/s':>11}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'batches':>8}"
            f"{'CPU us/w':>10}  what",
        ]
        results = [self.bare, self.predict, ours]
        if self.edgefleet_inline is not None:
            results.append(self.edgefleet_inline)
        if self.bare_prequantized is not None:
            results.append(self.bare_prequantized)
        for result in results:
            lat = result.latency
            cpu = "-" if result.cpu_us_per_window is None else f"{result.cpu_us_per_window:.2f}"
            lines.append(
                f"  {result.name:<17}{result.windows_per_s:>11,.0f}{lat.p50_ms:>9.3f}{lat.p95_ms:>9.3f}"
                f"{lat.p99_ms:>9.3f}{result.batches:>8}{cpu:>10}  {result.description}"
            )
        verdict = "ok" if self.meets_target else "BELOW TARGET"
        if self.dropped:
            verdict += f", {self.dropped} samples DROPPED"
        wrapper_us = self._per_window_us(self.predict, self.bare)
        inline = self.edgefleet_inline
        lines += [
            "",
            f"  ratio edgefleet/bare:    {self.ratio:.3f}x (target >= {self.target_ratio:.2f}x: {verdict}; "
            f"threaded as in the agent, {self.dropped} dropped)",
            *(
                []
                if self.inline_ratio is None
                else [
                    f"  ratio edgefleet-inline/bare: {self.inline_ratio:.3f}x "
                    "(producer inline in the measuring thread: information, not the target figure)"
                ]
            ),
            *(
                []
                if self.bare.cpu_us_per_window is None
                or ours.cpu_us_per_window is None
                or inline is None
                or inline.cpu_us_per_window is None
                else [
                    f"  CPU per window over bare: edgefleet "
                    f"{ours.cpu_us_per_window / self.bare.cpu_us_per_window:.2f}x, "
                    f"inline {inline.cpu_us_per_window / self.bare.cpu_us_per_window:.2f}x "
                    "(process CPU time, all threads)"
                ]
            ),
            *(
                []
                if self.consumer_cpu_us_per_window is None or not self.bare.cpu_us_per_window
                else [
                    f"  edgefleet's inference thread alone: {self.consumer_cpu_us_per_window:.2f} CPU us/w "
                    f"(bare, all threads: {self.bare.cpu_us_per_window:.2f}); with --threads 1 and a core "
                    "free for the producer, bare's over this bounds the ratio"
                ]
            ),
            f"  ratio predict/bare:      {self.predict_ratio:.3f}x (Model.predict alone)",
            *(
                []
                if self.prequantized_ratio is None
                else [
                    f"  ratio edgefleet/bare-int8: {self.prequantized_ratio:.3f}x "
                    "(bare loop on pre-quantized input, no conversion: information only)"
                ]
            ),
            f"  ratio edgefleet/predict: {self.ratio / self.predict_ratio:.3f}x (the buffer + batcher share)",
            f"  median-latency ratio edgefleet/bare: {self.median_ratio:.3f}x (ignores scheduling stalls)",
            f"  added per window at the median: Model.predict {wrapper_us:.2f} us"
            + (
                ""
                if inline is None
                else f", push + buffer + batcher (inline) {self._per_window_us(inline, self.predict):.2f} us"
            ),
        ]
        return "\n".join(lines)

    def _render_not_windowed(self) -> str:
        threads = "runtime default" if self.threads is None else str(self.threads)
        lines = [
            f"model bench: {self.model_path} ({self.format}, {self.runtime})",
            f"  batch {self.batch} of {list(self.input_shape)}, threads {threads}, "
            f"{self.rounds} alternating rounds; not a (batch, window_length, channels) model, so "
            "edgefleet's path is Model.predict",
            "",
            f"  {'path':<17}{'samples/s':>11}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'batches':>8}"
            f"{'CPU us/s':>10}  what",
        ]
        results = [self.bare, self.predict]
        if self.bare_prequantized is not None:
            results.append(self.bare_prequantized)
        for result in results:
            lat = result.latency
            cpu = "-" if result.cpu_us_per_window is None else f"{result.cpu_us_per_window:.2f}"
            lines.append(
                f"  {result.name:<17}{result.windows_per_s:>11,.1f}{lat.p50_ms:>9.3f}{lat.p95_ms:>9.3f}"
                f"{lat.p99_ms:>9.3f}{result.batches:>8}{cpu:>10}  {result.description}"
            )
        verdict = "ok" if self.meets_target else "BELOW TARGET"
        lines += [
            "",
            f"  ratio predict/bare:      {self.ratio:.3f}x (target >= {self.target_ratio:.2f}x: {verdict})",
            f"  median-latency ratio predict/bare: {self.median_ratio:.3f}x (ignores scheduling stalls)",
            "  added per sample at the median: Model.predict "
            f"{self._per_window_us(self.predict, self.bare):.2f} us",
        ]
        return "\n".join(lines)
