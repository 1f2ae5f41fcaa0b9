"""The multilevel result as users see it: one row per effect with metafor's rma.mv weights, and the
forest plot drawn from the result (grouped by cluster, pooled diamond only for an intercept-only model)."""

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

import pfps_meta as pm
from pfps_meta.present import plots

DATA = Path(__file__).resolve().parents[1] / "data" / "examples"


@pytest.fixture(scope="module")
def konstantopoulos():
    return pm.multilevel(pd.read_csv(DATA / "konstantopoulos2011.csv"), levels=("district", "study"))


def test_konstantopoulos2011_weights_are_metafors(konstantopoulos):
    frame = konstantopoulos.effects_frame()
    # metafor 3.8-1: head(weights(rma.mv(yi, vi, random = ~ 1 | district/study)))
    assert frame["weight"].iloc[:6].to_numpy() == pytest.approx(
        [0.5714077092, 0.5714077092, 0.5016213659, 0.5016213659, 1.7210719499, 1.7210719499], rel=2e-6)
    assert frame["weight"].sum() == pytest.approx(100)
    assert list(frame["cluster"].iloc[:5]) == ["11", "11", "11", "11", "12"]


def _texts(fig):
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]


def test_konstantopoulos2011_forest_groups_by_district_and_draws_the_pooled_diamond(konstantopoulos):
    fig = plots.forest_multilevel(konstantopoulos)
    texts = _texts(fig)
    assert sum(t.startswith("district ") for t in texts) == 11
    assert sum(t.startswith("study ") for t in texts) == 56
    assert "Multilevel model (95% CI)" in texts
    assert "0.18 [0.02, 0.35]" in texts          # 0.184713 [0.018987, 0.350440]
    assert "[-0.45, 0.82]" in texts              # metafor predict(): pi.lb -0.450231, pi.ub 0.819657
    assert any(t.startswith("56 effects in 11 clusters") for t in texts)


def test_berkey1998_with_moderators_has_no_single_pooled_value():
    b = pd.read_csv(DATA / "berkey1998.csv")
    fit = pm.multivariate(b, inner="outcome", outer="trial", struct="UN", mods="C(outcome)", intercept=False)
    texts = _texts(plots.forest_multilevel(fit))
    assert not any(t.startswith("Multilevel model (") for t in texts)
    assert any("no single pooled value" in t for t in texts)
    assert sum(t.startswith("trial ") for t in texts) == 5
    assert np.isclose(fit.effects_frame()["weight"].sum(), 100)


def test_konstantopoulos2011_forest_with_cr2_draws_the_robust_ci(konstantopoulos):
    robust = konstantopoulos.robust(cluster="district", adjust="CR2")
    texts = _texts(plots.forest_multilevel(konstantopoulos, robust=robust))
    assert "Multilevel model (95% CI, CR2 cluster-robust)" in texts
    assert "0.18 [-0.00, 0.37]" in texts       # clubSandwich CR2 by district: [-0.0038, 0.3733]
