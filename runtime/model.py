"""Load a model file and run it: the runtime's public face.

:func:`load_model` picks a backend plugin from the file extension; :class:`Model` converts
between caller space and tensor space (checking the caller's inputs is
:mod:`edgefleet.runtime.model_inputs`' part). Callers see float32 for float and quantized tensors,
any batch size, outputs keyed exactly as the model names them; other tensor types (ids, a
sample rate) pass through, cast only when the cast is safe.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Mapping
from types import TracebackType

import numpy as np
import numpy.typing as npt

from edgefleet.errors import EdgefleetError, ModelError, ModelLoadError
from edgefleet.runtime.backends import BackendSession
from edgefleet.runtime.backends.base import run_looped
from edgefleet.runtime.encoding import InputEncoder
from edgefleet.runtime.model_inputs import CallerInputs
from edgefleet.runtime.quantization import (
    InputPlan,
    Normalization,
    Normalizer,
    Quantizer,
    input_plan,
    output_converter,
)
from edgefleet.runtime.tensors import ModelInfo, TensorSpec, format_shape
from edgefleet.types import AnyArray, NanPolicy

__all__ = ["Model"]

log = logging.getLogger(__name__)


class _MaybeNotFiniteError(Exception):
    """A sample failed the quick finiteness test: the exact batch-wide check decides."""


class Model(CallerInputs):
    """A loaded model. Thread-safe (calls are serialised); use as a context manager or ``close()``."""

    def __init__(
        self,
        info: ModelInfo,
        session: BackendSession,
        *,
        nan_policy: NanPolicy = "reject",
        state_map: Mapping[str, str] | None = None,
    ) -> None:
        self.info = info
        self._session: BackendSession | None = session
        self._nan_policy: NanPolicy = nan_policy
        self._lock = threading.Lock()
        self._plans = {spec.name: input_plan(spec) for spec in info.inputs}
        self._outputs = {spec.name: spec for spec in info.outputs}
        self._to_caller = {spec.name: output_converter(spec) for spec in info.outputs}
        self._state_map = dict(state_map or {})
        self._check_state_map()
        self._caller_inputs = [n for n in self._plans if n not in self._state_map]
        self._batched = frozenset(n for n, p in self._plans.items() if p.batched)
        # A state tensor without a dynamic batch dimension carries one stream's state, so a batch
        # is a sequence of steps of that stream: run sample by sample, threading the state through.
        self._sequential = any(self._plans[n].spec.shape[:1] != (None,) for n in self._state_map)
        self._state: dict[str, AnyArray] = {}
        self._finite_scratch: np.ndarray[tuple[int, ...], np.dtype[np.bool_]] = np.empty((0,), np.bool_)
        self._fast = self._fast_plan()

    def _fast_plan(self) -> InputPlan | None:
        """The one input's plan when predict(array) can skip the general path (see _predict_fast)."""
        if len(self._caller_inputs) != 1 or self._state_map:
            return None
        plan = self._plans[self._caller_inputs[0]]
        if plan.tail is None or not plan.is_float:
            return None
        if plan.quantizer is None and plan.tensor_dtype != plan.caller_dtype:
            return None  # float64 tensors: the general path converts
        if plan.quantizer is not None and self._nan_policy == "allow":
            return None  # NaN must be zeroed before quantizing: the general path does it
        return plan

    # -- public API ---------------------------------------------------------------------------

    @property
    def inputs(self) -> list[TensorSpec]:
        """Inputs the caller passes (state inputs are fed by the model itself)."""
        return [self._plans[n].spec for n in self._caller_inputs]

    @property
    def outputs(self) -> list[TensorSpec]:
        return list(self.info.outputs)

    @property
    def input_normalization(self) -> Normalization | None:
        """The per-channel normalization set by :meth:`set_input_normalization`, or None."""
        plan = self._plans[self._caller_inputs[0]] if len(self._caller_inputs) == 1 else None
        if plan is None:
            return None
        if plan.quantizer is not None:
            return plan.quantizer.normalization
        return None if plan.normalizer is None else plan.normalizer.normalization

    def set_input_normalization(self, mean: npt.ArrayLike | None, std: npt.ArrayLike | None = None) -> None:
        """Feed the model ``(x - mean) / std`` instead of ``x``; ``mean`` and ``std`` are per channel.

        Single-input models with float32 caller input only. ``mean`` and ``std`` have shape
        ``(channels,)``, the input's last dimension, and broadcast over it; every ``std`` must be
        > 0. For an integer-input model the normalization is folded into the input quantizer
        (one set of passes, within one code of normalizing first: see :class:`Quantizer`); for a
        float-input model it is computed into one reused scratch buffer. ``nan_policy`` applies to
        the caller's values, before normalization. ``set_input_normalization(None)`` removes it.
        """
        names = self._caller_inputs
        if len(names) != 1:
            raise self._error(
                f"input normalization needs a single-input model; this one has inputs {names}",
                tensor=None,
                expected="one input",
                got=f"{len(names)} inputs",
                hint="normalize each input yourself before predict()",
            )
        name = names[0]
        plan = self._plans[name]
        shape = plan.spec.shape
        channels = shape[-1] if shape else None
        if not plan.is_float or channels is None or len(shape) < 2:
            raise self._error(
                f"input {name!r} ({format_shape(shape)} {plan.spec.dtype}) cannot be normalized per channel",
                tensor=name,
                expected="a float or quantized input of shape [batch, ..., channels] with fixed channels",
                got=f"{format_shape(shape)} {plan.spec.caller_dtype}",
                hint="normalize the values yourself before predict()",
            )
        if mean is None and std is None:
            normalization = None
        else:
            if mean is None or std is None:
                given = "mean" if std is None else "std"
                raise self._error(
                    f"input normalization needs both mean and std, got only {given}",
                    tensor=name,
                    expected=f"mean and std of shape ({channels},)",
                    got=f"only {given}",
                    hint="pass std=1 per channel to only subtract a mean, mean=0 to only scale",
                )
            try:
                normalization = Normalization.of(mean, std, channels)
            except ValueError as exc:
                raise self._error(
                    f"bad input normalization for {name!r}: {exc}",
                    tensor=name,
                    expected=f"mean and std of shape ({channels},), finite, std > 0",
                    got=str(exc),
                    hint="use the per-channel mean and standard deviation of the training data",
                ) from None
        spec = plan.spec
        quantizer = None
        normalizer = None
        if spec.quantization is not None:
            quantizer = Quantizer(spec.quantization, spec.numpy_dtype, normalization)
        elif normalization is not None:
            normalizer = Normalizer(normalization)
        with self._lock:
            self._plans[name] = dataclasses.replace(plan, quantizer=quantizer, normalizer=normalizer)
            self._fast = self._fast_plan()

    def predict(self, inputs: AnyArray | Mapping[str, AnyArray]) -> dict[str, AnyArray]:
        """Run a batch. ``inputs``: one array for a single-input model, else arrays keyed by input name."""
        fast = self._fast
        if (
            fast is not None
            and type(inputs) is np.ndarray
            and inputs.dtype == fast.caller_dtype
            and inputs.ndim == fast.rank
            and inputs.shape[1:] == fast.tail
            and inputs.shape[0] > 0
        ):
            return self._predict_fast(fast, inputs)
        with self._lock:
            if self._session is None:
                raise self._closed_error()
            feeds, batch = self._prepare(self._by_name(inputs))
            if self._sequential and batch > 1:
                return run_looped(lambda one: self._step(one, 1), feeds, self._batched, batch)
            return self._step(feeds, batch)

    def _predict_fast(self, plan: InputPlan, arr: AnyArray) -> dict[str, AnyArray]:
        """predict() for the common call: one float32 batch of the exact shape, no recurrent state.

        The same conversions as the general path, minus its per-call dicts, lookups and re-checks
        (the caller's dtype and shape were checked by predict's condition).
        """
        with self._lock:
            session = self._session
            if session is None:
                raise self._closed_error()
            quantizer = plan.quantizer
            if quantizer is not None:
                # the NaN/inf check rides on the quantizer's own range check (the fast plan never
                # has a quantizer under "allow"); only input that fails it takes the policy's path
                tensor = quantizer.quantize_finite(arr)
                if tensor is None:
                    tensor = quantizer(self._apply_nan_policy(plan.spec.name, arr))
            else:
                normalizer = plan.normalizer
                if self._nan_policy != "allow":
                    if (
                        normalizer is None
                        and not session.native_batch
                        and plan.batched
                        and arr.flags.c_contiguous
                        and arr.shape[0] > 1
                    ):
                        checked = self._run_checked_samples(session, plan, arr)
                        if checked is not None:
                            return checked
                    arr = self._apply_nan_policy(plan.spec.name, arr)
                if normalizer is not None:
                    tensor = normalizer(arr)
                else:
                    tensor = arr if arr.flags.c_contiguous else np.ascontiguousarray(arr)
            return self._run_fast(session, plan, tensor)

    def _run_checked_samples(
        self, session: BackendSession, plan: InputPlan, arr: AnyArray
    ) -> dict[str, AnyArray] | None:
        """Run a batch the session loops over, checking each sample just before its run.

        The check reads the sample into cache where the runtime's own read finds it, instead of
        streaming the whole batch through once more first. None when a sample may hold NaN/inf:
        the caller's batch-wide check then rejects (or zeroes) the batch with the same message
        as ever; the samples before it ran for nothing, which a stateless model allows.
        """
        name = plan.spec.name
        run, looks_finite = session.run, self._looks_finite

        def run_one(feeds: Mapping[str, AnyArray]) -> dict[str, AnyArray]:
            if not looks_finite(feeds[name]):
                raise _MaybeNotFiniteError
            return run(feeds, 1)

        try:
            raw = run_looped(run_one, {name: arr}, frozenset((name,)), int(arr.shape[0]))
        except _MaybeNotFiniteError:
            return None
        except EdgefleetError:
            raise
        except Exception as exc:  # the native runtime's own exception types
            raise self._inference_error(exc) from None
        convert = self._to_caller
        return {out_name: convert[out_name](out) for out_name, out in raw.items()}

    def _run_fast(self, session: BackendSession, plan: InputPlan, tensor: AnyArray) -> dict[str, AnyArray]:
        try:
            raw = session.run({plan.spec.name: tensor}, int(tensor.shape[0]))
        except EdgefleetError:
            raise
        except Exception as exc:  # the native runtime's own exception types
            raise self._inference_error(exc) from None
        convert = self._to_caller
        return {name: convert[name](out) for name, out in raw.items()}

    def input_encoder(self) -> InputEncoder | None:
        """An encoder that quantizes samples at ingest exactly as :meth:`predict` would (or None).

        Only for a single-input model whose input is quantized and fully shaped after the batch
        dimension, e.g. ``[batch, window, channels]`` int8; None otherwise (float-input models need
        no encoding). Set the input normalization first: it is folded into the codes. Each call
        returns a new encoder (one per stream buffer: it keeps scratch buffers).
        """
        plan = self._fast
        if plan is None or plan.quantizer is None or plan.tail is None or len(plan.tail) < 1:
            return None
        return InputEncoder(plan.quantizer, plan.tail)

    def predict_encoded(self, codes: AnyArray, encoder: InputEncoder) -> dict[str, AnyArray]:
        """:meth:`predict` on windows already quantized by ``encoder`` (from :meth:`input_encoder`).

        ``codes`` is ``(batch, *encoder.window_shape)`` in the input tensor's integer dtype; the
        outputs are what :meth:`predict` returns for the float windows the codes were made from.
        """
        with self._lock:
            session = self._session
            if session is None:
                raise self._closed_error()
            plan = self._fast
            if plan is None or plan.quantizer is not encoder.source:
                raise self._error(
                    "these codes come from an input encoder this model no longer uses",
                    tensor=None if plan is None else plan.spec.name,
                    expected="codes from the model's current input_encoder()",
                    got="a stale encoder",
                    hint="take a new input_encoder() after set_input_normalization(), or call predict()",
                )
            if (
                type(codes) is not np.ndarray
                or codes.dtype != plan.tensor_dtype
                or codes.shape[1:] != plan.tail
                or not codes.shape[0]
            ):
                got = f"{getattr(codes, 'dtype', type(codes).__name__)} {getattr(codes, 'shape', '')}"
                raise self._error(
                    f"codes for input {plan.spec.name!r} do not fit the tensor",
                    tensor=plan.spec.name,
                    expected=f"{plan.tensor_dtype} of shape (N>0, {', '.join(map(str, plan.tail or ()))})",
                    got=got,
                    hint="pass the codes popped from a stream buffer with this model's encoder",
                )
            if not codes.flags.c_contiguous:
                codes = np.ascontiguousarray(codes)
            return self._run_fast(session, plan, codes)

    def _closed_error(self) -> ModelError:
        return ModelError(f"{self.info.path}: the model is closed", path=self.info.path, hint="load it again")

    def _inference_error(self, exc: Exception) -> ModelError:
        return ModelError(
            f"{self.info.path}: inference failed: {str(exc).strip()}",
            path=self.info.path,
            hint="check the input values and shapes against `edgefleet model inspect`",
        )

    def reset_state(self) -> None:
        """Forget the recurrent state: the next predict starts from zeros."""
        with self._lock:
            self._state.clear()

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def __enter__(self) -> Model:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Model({self.info.path!r}, format={self.info.format!r}, backend={self.info.backend!r})"

    # -- running ------------------------------------------------------------------------------

    def _initial_state(self, name: str, batch: int) -> AnyArray:
        plan = self._plans[name]
        shape = tuple(
            (batch if i == 0 and plan.batched else 1) if d is None else d
            for i, d in enumerate(plan.spec.shape)
        )
        return np.zeros(shape, dtype=plan.caller_dtype)

    def _step(self, feeds: Mapping[str, AnyArray], batch: int) -> dict[str, AnyArray]:
        plans = self._plans
        tensors = {name: self._to_tensor(plans[name], arr) for name, arr in feeds.items()}
        for state_in in self._state_map:
            state = self._state.get(state_in)
            if state is None or (self._plans[state_in].spec.shape[:1] == (None,) and state.shape[0] != batch):
                state = self._initial_state(state_in, batch)
            tensors[state_in] = self._to_tensor(self._plans[state_in], state)
        session = self._session
        assert session is not None  # predict() checked under the lock
        try:
            raw = session.run(tensors, batch)
        except EdgefleetError:
            raise
        except Exception as exc:  # the native runtime's own exception types
            raise self._inference_error(exc) from None
        convert = self._to_caller
        outputs = {name: convert[name](arr) for name, arr in raw.items()}
        for state_in, state_out in self._state_map.items():
            self._state[state_in] = self._fit_state(state_in, outputs[state_out])
        return outputs

    def _fit_state(self, state_in: str, value: AnyArray) -> AnyArray:
        # A copy: the same array is returned to the caller, who may modify it.
        return np.array(value, dtype=self._plans[state_in].caller_dtype, copy=True)

    def _to_tensor(self, plan: InputPlan, arr: AnyArray) -> AnyArray:
        if plan.quantizer is not None:
            if self._nan_policy == "allow":
                arr = np.nan_to_num(arr, nan=0.0)
            return plan.quantizer(arr)
        if plan.normalizer is not None:
            arr = plan.normalizer(arr)
        if arr.dtype != plan.tensor_dtype:
            arr = arr.astype(plan.tensor_dtype)
        if not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr)
        return arr

    # -- load-time checks ---------------------------------------------------------------------

    def _check_state_map(self) -> None:
        for state_in, state_out in self._state_map.items():
            problem = None
            if state_in not in self._plans:
                problem = (
                    f"state input {state_in!r} is not an input of the model (inputs: {list(self._plans)})"
                )
            elif state_out not in self._outputs:
                problem = (
                    f"state output {state_out!r} is not an output of the model "
                    f"(outputs: {list(self._outputs)})"
                )
            elif len(self._plans[state_in].spec.shape) != len(self._outputs[state_out].shape):
                problem = (
                    f"state {state_in!r} {format_shape(self._plans[state_in].spec.shape)} and "
                    f"{state_out!r} {format_shape(self._outputs[state_out].shape)} differ in rank"
                )
            if problem:
                raise ModelLoadError(
                    f"{self.info.path}: {problem}",
                    path=self.info.path,
                    hint="state_map maps each state input name to the output that feeds it",
                )

    def warm_up(self) -> None:
        """Run one zero batch so first-call costs (allocation, kernel selection) happen at load."""
        zeros = {
            n: np.zeros(
                tuple(1 if d is None else d for d in self._plans[n].spec.shape), self._plans[n].caller_dtype
            )
            for n in self._caller_inputs
        }
        self.predict(zeros)
        self.reset_state()
