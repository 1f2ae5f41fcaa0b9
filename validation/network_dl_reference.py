"""netmeta's DerSimonian-Laird network meta-analysis of dat.senn2013, computed with pimeta 1.1.0 (a
Python port of netmeta) in a throwaway virtual environment, written to
tests/fixtures/network/senn2013_netmeta_dl.json. pimeta is never a dependency of pfps-meta.

    python -m venv /tmp/pimeta && /tmp/pimeta/bin/pip install pimeta==1.1.0
    /tmp/pimeta/bin/python validation/network_dl_reference.py        # from the repository root

netmeta is not installable here; pimeta reproduces its published senn2013 figures (tau^2 0.1087,
I^2 81.4%).
"""

import json
from pathlib import Path

import pandas as pd
import pimeta

ROOT = Path(__file__).resolve().parents[1]
arms = pd.read_csv(ROOT / "data" / "examples" / "senn2013.csv")
pw = pimeta.pairwise(treat=arms["treatment"].tolist(), n=arms["n"].tolist(), mean=arms["mean"].tolist(),
                     sd=arms["sd"].tolist(), studlab=arms["study"].tolist(), sm="MD")
net = pimeta.netmeta(pw.TE, pw.seTE, pw.treat1, pw.treat2, pw.studlab, sm="MD", reference_group="placebo")
dd = pimeta.decomp_design(net)
trts = [str(t) for t in net.trts]


def versus(m, ref="placebo"):
    m = pd.DataFrame(m, index=trts, columns=trts)
    return {t: float(m.loc[t, ref]) for t in trts if t != ref}


def pairs(m):
    m = pd.DataFrame(m, index=trts, columns=trts)
    return {f"{a}:{b}": float(m.loc[a, b]) for i, a in enumerate(trts) for b in trts[i + 1:]}


out = {
    "source": f"pimeta {pimeta.__version__} netmeta(method_tau='DL') on dat.senn2013 pairwise MDs",
    "treatments": trts, "tau2": float(net.tau2), "I2": float(net.I2), "Q": float(net.Q), "df_Q": int(net.df_Q),
    "TE_random": versus(net.TE_random), "seTE_random": versus(net.seTE_random),
    "TE_common": versus(net.TE_common), "seTE_common": versus(net.seTE_common),
    "pscore_random_small_good": {t: float(v) for t, v in zip(trts, net.pscore_random)},
    "TE_direct_random": pairs(net.TE_direct_random), "seTE_direct_random": pairs(net.seTE_direct_random),
    "TE_indirect_random": pairs(net.TE_indirect_random), "prop_direct_random": pairs(net.P_random),
    "Q_decomp": {k: [float(x) for x in v] for k, v in dd.Q_decomp.items()},
    "tau_within": float(dd.tau_within), "Q_inc_random": [float(x) for x in list(dd.Q_inc_random)[:3]]
    if not isinstance(dd.Q_inc_random, dict) else {k: float(v) for k, v in dd.Q_inc_random.items()
                                                     if isinstance(v, (int, float))},
}
(ROOT / "tests" / "fixtures" / "network" / "senn2013_netmeta_dl.json").write_text(json.dumps(out, indent=1))
print(json.dumps({k: out[k] for k in ("tau2", "I2", "Q", "df_Q", "tau_within", "Q_inc_random")}))
