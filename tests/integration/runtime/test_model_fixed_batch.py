"""Model.predict on an ONNX model whose batch axis is fixed at 1: each sample runs on its own.

Results, errors and NaN handling of a batch must be exactly those of the general path (which
checks the whole batch before running anything), wherever the bad value is in the batch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgefleet.errors import ModelInputError
from edgefleet.runtime import load_model
from tests.fixtures.runtime import onnx_models as om
from tests.support.arrays import float_output

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fixed1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return om.float_model(tmp_path_factory.mktemp("fixed-batch"), batch=1)


def test_fixed_batch_model_runs_any_batch_as_the_general_path_does(fixed1: Path) -> None:
    x = np.random.default_rng(3).standard_normal((9, 4)).astype(np.float32)
    with load_model(fixed1) as model:
        fast = model.predict(x)["probs"]
        general = model.predict({"x": x})["probs"]
        np.testing.assert_array_equal(fast, general)
        np.testing.assert_allclose(float_output(fast), om.expected_probs(x), rtol=1e-5, atol=1e-6)
        # a strided view and a normalization too
        strided = np.repeat(x, 2, axis=0)[::2]
        np.testing.assert_array_equal(model.predict(strided)["probs"], general)
        model.set_input_normalization(np.full(4, 0.5, np.float32), np.full(4, 2.0, np.float32))
        normalized = model.predict(x)["probs"]
        np.testing.assert_allclose(
            float_output(normalized), om.expected_probs((x - 0.5) / 2.0), rtol=1e-5, atol=1e-6
        )


@pytest.mark.parametrize("where", [0, 4, 8])
def test_a_bad_sample_anywhere_rejects_the_whole_batch_with_its_count(fixed1: Path, where: int) -> None:
    x = np.ones((9, 4), np.float32)
    x[where, 1] = np.nan
    x[5, 3] = -np.inf
    with load_model(fixed1) as model, pytest.raises(ModelInputError, match=r"2 NaN/inf value\(s\) out of 36"):
        model.predict(x)


def test_zero_policy_replaces_bad_values_and_allow_passes_them(fixed1: Path) -> None:
    x = np.random.default_rng(4).standard_normal((6, 4)).astype(np.float32)
    bad = x.copy()
    bad[2, 0] = np.nan
    bad[5, 2] = np.inf
    clean = np.where(np.isfinite(bad), bad, np.float32(0))
    with load_model(fixed1, nan_policy="zero") as model:
        np.testing.assert_array_equal(model.predict(bad)["probs"], model.predict(clean)["probs"])
    with load_model(fixed1, nan_policy="allow") as model:
        probs = model.predict(bad)["probs"]
        assert np.isnan(probs[2]).all()
        assert np.isfinite(probs[[0, 1, 3, 4]]).all()


def test_huge_finite_values_are_not_mistaken_for_nan(fixed1: Path) -> None:
    # finite values whose squares are past float32's range are still finite
    x = np.full((3, 4), 1e30, np.float32)
    with load_model(fixed1) as model:
        got = model.predict(x)["probs"]
        np.testing.assert_array_equal(got, model.predict({"x": x})["probs"])
