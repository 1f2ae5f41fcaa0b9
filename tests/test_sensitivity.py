"""Leave-one-out against metafor's leave1out() (fixture from validation/make_leave1out_fixtures.R)."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.sensitivity import leave_one_out

CASES = json.loads((Path(__file__).parent / "fixtures" / "metafor_leave1out.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['dataset']}-{c['method']}-{c['test']}")
def test_leave_one_out_matches_metafor(case):
    frame = pd.DataFrame({"study": [f"s{i}" for i in range(len(case["yi"]))], "yi": case["yi"], "vi": case["vi"]})
    res = pm.pool(frame, method=case["method"], ci="hksj" if case["test"] == "knha" else "wald")
    loo = leave_one_out(res)
    assert list(loo["study"]) == list(frame["study"])
    assert (loo["k"] == len(frame) - 1).all()
    compared = 0
    for name in ("estimate", "se", "ci_low", "ci_high", "p", "q", "q_p", "tau2", "i2", "h2"):
        if not isinstance(case[name], list):      # metafor reports no tau2 for a common-effect model
            assert case["method"] == "FE" and name == "tau2"
            continue
        compared += 1
        np.testing.assert_allclose(loo[name].to_numpy(float), np.array(case[name], dtype=float),
                                   rtol=1e-6, atol=1e-10, err_msg=name)
    assert compared >= 9
