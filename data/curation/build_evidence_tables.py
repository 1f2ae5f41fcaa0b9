"""Writes data/outcomes.csv, data/effects.csv and data/published.csv from the literal rows below.

Every number below was copied by hand from ../shared/evidence (nascimento2018-dossier.md, armdata.csv),
which quotes the public source of each. Derived values (Hedges' g from a reported t statistic, SE from a
CI, a sign reversal) are computed here, with the formula written next to them. Nothing is imputed:
a value that was not recovered stays empty. Run from the repository root:

    python data/curation/build_evidence_tables.py
"""

import csv
import math
from pathlib import Path

from pfps_meta.effects.sizes import hedges_correction

DATA = Path(__file__).resolve().parents[1]

OUTCOME_COLUMNS = ["trial_id", "arm", "role", "outcome", "scale", "scale_min", "scale_max",
                   "higher_is_better", "integer_valued", "timepoint", "timepoint_weeks", "value_type", "n", "n_type",
                   "n_alternatives", "mean", "sd", "se", "ci_low", "ci_high", "median", "q1", "q3", "min", "max",
                   "status", "source_citation", "source_location", "source_url", "quote", "notes"]

Q_FUKUDA = ("Seventy females (average SD age, 25 07 years), with a diagnosis of unilateral PFPS, were "
            "distributed randomly into 3 groups: 22 females in the knee exercise group [...] 23 females in "
            "the knee and hip exercise group [...]")
Q_SONG = ("Song et al43 RCT (Level 2)a | Group 1 (n=27): combined leg-press and hip adduction exercise | 45 | "
          ".42 | Group 2 (n=27): leg-press exercise | 53 | .48 | | Group 3 (n=25): control | 4 | .04 |")
Q_KHAY14 = ("the posterolateral hip exercise group (n=18; 10 with bilateral pain, 8 with unilateral symptoms) "
            "and the quadriceps exercise group (n=18; 12 with bilateral pain, 6 with unilateral symptoms)")
Q_FERBER = ("Participants were randomly allocated to either a hip and core-focused (n = 111) or knee-focused "
            "(n = 88) rehabilitation group for a 6-week program.")
Q_DOLAK_REGISTRY = ("Participant milestones | Measure | Hip Strengthening Then Combined Exercises [...] | Quadricep Group "
                    "Then Combined Exercises [...] | Specific Exercises STARTED | 17 | 16 | Specific Exercises Baseline | "
                    "17 | 16 | Specific Exercises 4 Weeks | 14 | 13 | Specific Exercises COMPLETED | 13 | 13 |")
Q_DOLAK = ("Methods: Thirty-three females with PFPS performed either initial hip strengthening (hip group) or "
           "initial quadriceps strengthening (quad group) for 4 weeks, prior to 4 weeks of a similar program "
           "of functional weight-bearing exercises. [...] Results: After 4 weeks, there was less mean ± SD "
           "pain in the hip group (2.4 ± 2.0) than in the quad group (4.1 ± 2.5) (P = .035).")

# (trial, [(arm, role, n, n_quote_source)], outcome rows [(outcome, scale, min, max, higher_is_better, timepoint, weeks)])
PAIN_VAS10 = ("pain", "VAS", 0, 10, "FALSE")


def arm_rows(trial, arms, outcomes, citation, location="", url="", quote="", notes=""):
    rows = []
    for outcome, scale, lo, hi, better, timepoint, weeks in outcomes:
        for arm, role, n in arms:
            rows.append({
                "trial_id": trial, "arm": arm, "role": role, "outcome": outcome, "scale": scale,
                "scale_min": lo, "scale_max": hi, "higher_is_better": better, "timepoint": timepoint,
                "timepoint_weeks": weeks, "value_type": "final", "n": n,
                "n_type": "randomised" if n != "" else "", "mean": "", "sd": "",
                "status": "partial" if n != "" else "not_recovered",
                "source_citation": citation, "source_location": location if n != "" else "",
                "source_url": url, "quote": quote if n != "" else "",
                "notes": notes or "post-intervention mean and SD not recovered (abstract reports P values only)",
            })
    return rows


def outcomes():
    rows = []
    rows += arm_rows("fukuda2010", [("KHE", "hip_knee", 23), ("KE", "knee", 22), ("CG", "no_training", "")],
                     [("pain", "NPRS", 0, 10, "FALSE", "post", 4),
                      ("activity", "LEFS", 0, 80, "TRUE", "post", 4),
                      ("activity", "AKPS", 0, 100, "TRUE", "post", 4)],
                     "Fukuda TY et al. J Orthop Sports Phys Ther 2010;40(11):736-742", "abstract",
                     "https://staging.scite.ai/authors/eduardo-magalhaes-38AOdd", Q_FUKUDA,
                     "means/SDs not recovered; CG randomised n (25 per the dossier) has no recovered quote")
    rows += arm_rows("khayambashi2012", [("HIP", "hip", ""), ("CONTROL", "no_training", "")],
                     [PAIN_VAS10 + ("post", 8), ("activity", "WOMAC", 0, 96, "FALSE", "post", 8)],
                     "Khayambashi K et al. J Orthop Sports Phys Ther 2012;42(1):22-29",
                     url="https://bjsm.bmj.com/lookup/external-ref?access_num=22027216",
                     notes="per-arm means/SDs not recovered; abstract: improved in exercise group, not in control")
    rows += arm_rows("song2009", [("LPHA", "hip_knee", 27), ("LP", "knee", 27), ("CONTROL", "no_training", 25)],
                     [("pain", "VAS worst pain (mm)", 0, 100, "FALSE", "post", 8),
                      ("activity", "Lysholm", 0, 100, "TRUE", "post", 8)],
                     "Song CY et al. Phys Ther 2009;89(5):409-418 (group sizes from Bolgla & Boling 2011, PMC3109895)",
                     "PMC3109895 Table 3", "https://pmc.ncbi.nlm.nih.gov/articles/PMC3109895/table/T3", Q_SONG,
                     "n as listed by a later review (analysed n); post means/SDs not recovered (only % change)")
    rows += arm_rows("ismail2013", [("CKC_HIP", "hip_knee", ""), ("CKC", "knee", "")],
                     [("pain", "VAS", 0, "", "FALSE", "post", 6), ("activity", "AKPS", 0, 100, "TRUE", "post", 6)],
                     "Ismail MM et al. Eur J Phys Rehabil Med 2013;49(5):687-698",
                     url="https://pubmed.ncbi.nlm.nih.gov/23820880/",
                     notes="per-arm n, means, SDs not recovered; VAS range (0-10 or 0-100) not verified")
    rows += arm_rows("nakagawa2008", [("QUAD_HIP", "hip_knee", ""), ("QUAD", "knee", "")],
                     [("pain", "VAS", 0, "", "FALSE", "post", 6)],
                     "Nakagawa TH et al. Clin Rehabil 2008;22(12):1051-1060",
                     url="https://www.unboundmedicine.com/medline/citation/19052244",
                     notes="per-arm n, means, SDs not recovered; VAS range not verified")
    rows += arm_rows("razeghi2010", [("KNEE_HIP", "hip_knee", ""), ("KNEE", "knee", "")],
                     [("pain", "VAS", 0, "", "FALSE", "post", 4)],
                     "Razeghi M et al. Iran Red Crescent Med J 2010;12(2):104-110",
                     url="http://ircmj.com/en/articles/70789.html",
                     notes="per-arm n, means, SDs not recovered; unit of analysis may be knees (52) not women (32)")
    rows += arm_rows("sahin2016", [("HIP_KNEE", "hip_knee", ""), ("KNEE", "knee", "")],
                     [("pain", "pain scale (not stated in abstract)", "", "", "FALSE", "post", 6),
                      ("activity", "function scale (not stated in abstract)", "", "", "TRUE", "post", 6)],
                     "Sahin M et al. Turk J Med Sci 2016;46(2):265-277",
                     url="https://journals.tubitak.gov.tr/medical/vol46/iss2/4/",
                     notes="per-arm n, means, SDs and scales not recovered")
    rows += arm_rows("baldon2014", [("FST", "hip_knee", ""), ("ST", "knee", "")],
                     [PAIN_VAS10 + ("post", 8), ("activity", "LEFS", 0, 80, "TRUE", "post", 8)],
                     "Baldon RM et al. J Orthop Sports Phys Ther 2014;44(4):240-251",
                     url="https://search.pedro.org.au/search-results/record-detail/38333",
                     notes="per-arm n, means, SDs not recovered")
    rows += arm_rows("dolak2011", [("HIP", "hip", ""), ("QUAD", "knee", "")],
                     [PAIN_VAS10 + ("post", 8), ("activity", "LEFS", 0, 80, "TRUE", "post", 8)],
                     "Dolak KL et al. J Orthop Sports Phys Ther 2011", url="https://medluna.com/article/21654093",
                     notes="8-week values not recovered; abstract reports within-group change only")
    # n per arm from the trial registration NCT00445224 (shared/evidence/armdata3.md): the link between the
    # registration and the paper is an INFERENCE (same sample of 33 women, same design, near-identical
    # wording), so the status is "inferred" and the other plausible arm sizes are kept as alternatives.
    for arm, mean, sd, n, completers, randomised in (("HIP", 2.4, 2.0, 14, 13, 17), ("QUAD", 4.1, 2.5, 13, 13, 16)):
        rows.append({"trial_id": "dolak2011", "arm": arm, "role": "hip" if arm == "HIP" else "knee",
                     "outcome": "pain", "scale": "VAS", "scale_min": 0, "scale_max": 10,
                     "higher_is_better": "FALSE", "timepoint": "4wk", "timepoint_weeks": 4,
                     "value_type": "final", "n": n,
                     "n_type": "assessed at 4 weeks (registry NCT00445224; registry-to-paper link inferred)",
                     "n_alternatives": f"completers={completers}; randomised={randomised}",
                     "mean": mean, "sd": sd, "status": "inferred",
                     "source_citation": "Dolak KL et al. J Orthop Sports Phys Ther 2011 (mean, SD); "
                                        "ClinicalTrials.gov NCT00445224 participant flow (n)",
                     "source_location": "abstract, Results; registry results, Participant Flow",
                     "source_url": "https://medluna.com/article/21654093 ; https://scribd.com/document/505753649 ; "
                                   "https://meddatax.com/clinical-trials/NCT00445224/results",
                     "quote": Q_DOLAK + " || " + Q_DOLAK_REGISTRY,
                     "notes": "end of the isolated-strengthening phase (hip-only vs quadriceps-only), not end of the "
                              "8-week programme (both arms cross over to combined hip + quadriceps work after week 4); "
                              "the paper's analysis was a mixed model, and which n its SDs use is not stated"})
    rows += arm_rows("khayambashi2014", [("HIP", "hip", 18), ("QUAD", "knee", 18)],
                     [PAIN_VAS10 + ("post", 8), ("activity", "WOMAC", 0, 96, "FALSE", "post", 8)],
                     "Khayambashi K et al. Arch Phys Med Rehabil 2014 (issue 5, pp. 900-907)", "Methods (copied text)",
                     "https://pi3ksignals.com/index.php/the-purpose-of-the-current-study-was-to-compare-the-immediate-and",
                     Q_KHAY14, "means/SDs not recovered; between-group t statistics are in data/effects.csv")
    rows += arm_rows("ferber2015", [("HIP", "hip", 111), ("KNEE", "knee", 88)],
                     [PAIN_VAS10 + ("post", 6), ("activity", "AKPS", 0, 100, "TRUE", "post", 6)],
                     "Ferber R et al. J Athl Train 2015;50(4):366-377 (arm sizes: J Athl Train 2018;53(6):545)",
                     "J Athl Train 2018;53(6):545 abstract",
                     "https://nata.kglmeridian.com/view/journals/attr/53/6/article-p545.xml", Q_FERBER,
                     "means/SDs not recovered (PMC4560005 Table 3 not reachable in the copies found)")
    rows += arm_rows("avraham2007", [("COMBINATION", "hip_knee", ""), ("KNEE", "knee", "")],
                     [("pain", "VAS", 0, "", "FALSE", "post", 3), ("activity", "PFJES", 0, 100, "TRUE", "post", 3)],
                     "Avraham F et al. ScientificWorldJournal 2007;7:1256-1262",
                     url="https://cris.haifa.ac.il/en/publications/the-efficacy-of-treatment-of-different-intervention-programs-for-",
                     notes="per-arm n, means, SDs not recovered; abstract: no between-group differences")
    return rows


EFFECT_COLUMNS = ["trial_id", "exp_arm", "ctrl_arm", "outcome", "scale", "higher_is_better", "timepoint",
                  "timepoint_weeks", "value_type", "measure", "yi", "sei", "reported", "status", "derivation",
                  "n_exp", "n_ctrl", "source_citation", "source_location", "source_url", "quote"]

Q_KHAY_T_VAS = ("VAS scores were lower in the posterolateral hip exercise group than the quadriceps exercise group "
                "postintervention (t=1.823, P=.039) and at 6-month follow-up (t=2.80, P>.004) ( table 3).")
Q_KHAY_T_WOMAC = ("the WOMAC scores were lower in the posterolateral hip exercise group than the quadriceps exercise "
                  "group postintervention (t=3.91, P<.001) and at 6-month follow-up (t=4.51, P<.001) (see table 3).")
Q_HOTT3 = ("Between-group differences at 3 months for Anterior Knee Pain Scale were as follows: knee versus control, "
           "0.2 (95% CI, -5.5 to 6.0); hip versus control, 1.0 (95% CI, -4.6 to 6.6); and hip versus knee, 0.8 "
           "(95% CI, -4.8 to 6.4).")
Q_HOTT12 = ("Between-group differences for AKPS were as follows: knee versus free physical activity -4.3 (95% CI "
            "-12.3 to 3.7); hip versus free physical activity -1.1 (95% CI -8.9 to 6.7); and hip versus Knee 3.2 "
            "(95% CI -4.6 to 11.0).")
Q_TAHIR = ("Group B demonstrated significantly greater pain reduction at Day 11 (mean difference = 0.90, 95% CI: "
           "0.54–1.26, p < 0.001).")
Z975 = 1.959963984540054


def g_from_t(t, n1, n2, favours_exp_lower):
    """Hedges' g (metafor convention) from an independent-samples t: d = t sqrt(1/n1 + 1/n2), g = J d."""
    d = t * math.sqrt(1 / n1 + 1 / n2)
    g = float(hedges_correction(n1 + n2 - 2)) * d
    g = -g if favours_exp_lower else g      # exp - ctrl on the trial's own scale (lower is better)
    vi = 1 / n1 + 1 / n2 + g ** 2 / (2 * (n1 + n2))
    return g, math.sqrt(vi)


def effects():
    rows = []
    khay = dict(trial_id="khayambashi2014", exp_arm="HIP", ctrl_arm="QUAD", value_type="final", measure="SMD",
                status="derived", n_exp=18, n_ctrl=18,
                source_citation="Khayambashi K et al. Arch Phys Med Rehabil 2014 (issue 5, pp. 900-907)",
                source_location="Results (copied text), between-group post hoc tests, Table 3",
                source_url="https://mtorsignals.com/index.php/2017/07/page/3")
    for outcome, scale, timepoint, weeks, t, quote in (
            ("pain", "VAS", "post", 8, 1.823, Q_KHAY_T_VAS), ("pain", "VAS", "6mo", 34, 2.80, Q_KHAY_T_VAS),
            ("activity", "WOMAC", "post", 8, 3.91, Q_KHAY_T_WOMAC),
            ("activity", "WOMAC", "6mo", 34, 4.51, Q_KHAY_T_WOMAC)):
        g, se = g_from_t(t, 18, 18, favours_exp_lower=True)
        rows.append(dict(khay, outcome=outcome, scale=scale, higher_is_better="FALSE", timepoint=timepoint,
                         timepoint_weeks=weeks, yi=repr(g), sei=repr(se), reported=f"t = {t}",
                         derivation=("g = -J(34) t sqrt(1/18 + 1/18) (exact J; negative: hip group lower = better); "
                                     "se = sqrt(1/18 + 1/18 + g^2/72); assumes 18/18 analysed and an "
                                     "independent-samples t (the reported P values are one-tailed)"),
                         quote=quote))
    hott = dict(trial_id="hott2019", outcome="activity", scale="AKPS", higher_is_better="TRUE", value_type="final",
                measure="MD", status="derived", n_exp=39,
                source_citation="Hott A et al. Am J Sports Med 2019;47(6):1312; Scand J Med Sci Sports 2020;30(4):741")
    for ctrl, n_ctrl, timepoint, weeks, est, lo, hi, loc, url, quote in (
            ("KNEE", 37, "3mo", 13, 0.8, -4.8, 6.4, "abstract (3 months)", "https://www.painpluscpn.ca/Home/Article/87305", Q_HOTT3),
            ("FREE", 36, "3mo", 13, 1.0, -4.6, 6.6, "abstract (3 months)", "https://www.painpluscpn.ca/Home/Article/87305", Q_HOTT3),
            ("KNEE", 37, "12mo", 52, 3.2, -4.6, 11.0, "abstract (12 months)", "https://pubmed.ncbi.nlm.nih.gov/31846113/", Q_HOTT12),
            ("FREE", 36, "12mo", 52, -1.1, -8.9, 6.7, "abstract (12 months)", "https://pubmed.ncbi.nlm.nih.gov/31846113/", Q_HOTT12)):
        rows.append(dict(hott, exp_arm="HIP", ctrl_arm=ctrl, n_ctrl=n_ctrl, timepoint=timepoint,
                         timepoint_weeks=weeks, yi=repr(est), sei=repr((hi - lo) / (2 * Z975)),
                         reported=f"{est} (95% CI {lo} to {hi})",
                         derivation="yi as reported (hip minus comparator); se = (upper - lower) / (2 x 1.96)",
                         source_location=loc, source_url=url, quote=quote))
    rows.append(dict(trial_id="tahir_jhwcr", exp_arm="B", ctrl_arm="A", outcome="pain", scale="NPRS",
                     higher_is_better="FALSE", timepoint="day11", timepoint_weeks=1.6, value_type="change",
                     measure="MD", yi=repr(-0.90), sei=repr((1.26 - 0.54) / (2 * Z975)),
                     reported="greater pain reduction in B: 0.90 (95% CI 0.54 to 1.26)", status="derived",
                     derivation=("change-score MD (post - pre), B minus A = -(reported difference in reduction); "
                                 "se = (1.26 - 0.54) / (2 x 1.96)"),
                     n_exp="", n_ctrl="", source_citation="Tahir et al. jhwcr.com article 496 (year not verified)",
                     source_location="abstract, Results", source_url="https://jhwcr.com/index.php/jhwcr/article/view/496",
                     quote=Q_TAHIR))
    return rows


PUBLISHED_COLUMNS = ["id", "review", "citation", "comparison", "outcome", "measure", "estimate", "ci_low",
                     "ci_high", "k", "participants", "model", "scale_note", "source_url", "location", "quote",
                     "status"]
Q_NASC = ("Random effects meta-analyses revealed that hip and knee strengthening decreased pain (MD -3.3, 95% CI -5.6 "
          "to -1.1) and improved activity (SMD 1.4, 95% CI 0.03 to 2.8), compared to no training/placebo. In addition, "
          "hip and knee strengthening was superior to knee strengthening alone for decreasing pain (MD -1.5, 95% CI "
          "-2.3 to -0.8) and improving activity (SMD 0.7, 95% CI 0.2 to 1.3).")


def published():
    nasc = dict(review="nascimento2018",
                citation="Nascimento LR et al. J Orthop Sports Phys Ther 2018;48(1):19-31 (doi 10.2519/jospt.2018.7365)",
                k="", participants="", model="random effects", status="verified (abstract)",
                source_url="https://search.pedro.org.au/search-results/record-detail/51308",
                location="abstract, RESULTS", quote=Q_NASC)
    rows = [
        dict(nasc, id="nascimento2018_A1", comparison="hip_knee_vs_no_training_placebo", outcome="pain",
             measure="MD", estimate="-3.3", ci_low="-5.6", ci_high="-1.1", scale_note="0-10 (inferred)"),
        dict(nasc, id="nascimento2018_A2", comparison="hip_knee_vs_no_training_placebo", outcome="activity",
             measure="SMD", estimate="1.4", ci_low="0.03", ci_high="2.8", scale_note="positive = better activity"),
        dict(nasc, id="nascimento2018_B1", comparison="hip_knee_vs_knee_alone", outcome="pain",
             measure="MD", estimate="-1.5", ci_low="-2.3", ci_high="-0.8", scale_note="0-10 (inferred)"),
        dict(nasc, id="nascimento2018_B2", comparison="hip_knee_vs_knee_alone", outcome="activity",
             measure="SMD", estimate="0.7", ci_low="0.2", ci_high="1.3", scale_note="positive = better activity"),
    ]
    other = [
        ("rogan2019_pain", "rogan2019", "Rogan et al. J Strength Cond Res 2019;33:3174", "hip_knee_vs_knee_alone",
         "pain", "SMD", "-0.99", "-1.99", "0.02", "http://search.pedro.org.au/search-results/record-detail/58898",
         "When comparing a combined hip and knee muscle strengthening with knee muscle strengthening alone, pain was "
         "reduced in the combined hip and knee-strengthening group (SMD -0.99; 95% CI -1.99 to 0.02;"),
        ("rogan2019_hip_vs_no_hip_pain", "rogan2019", "Rogan et al. J Strength Cond Res 2019;33:3174",
         "hip_vs_no_hip", "pain", "SMD", "-1.91", "-2.92", "-0.9",
         "http://search.pedro.org.au/search-results/record-detail/58898",
         "Hip muscle strengthening showed greater pain-reducing effects when compared with no hip strengthening "
         "(standardized mean difference (SMD) -1.91; 95% confidence interval (CI) -2.92 to -0.9; p = 0.0002)."),
        ("manojlovic2021_pain", "manojlovic2021", "Manojlović et al. J Pain Res 2021;14:1431-1449",
         "hip_knee_programmes", "pain", "MD", "-1.71", "-3.11", "-0.30",
         "https://www.mendeley.com/catalogue/3215e922-0ac4-3811-95ca-1214e857ade8/",
         "The Hip&Knee exercise programs showed the greatest pain relief (mean difference = −1.71 (−3.11, −0.30); "
         "p = 0.02; I2 = 96%)"),
        ("manojlovic2021_function", "manojlovic2021", "Manojlović et al. J Pain Res 2021;14:1431-1449",
         "hip_knee_programmes", "activity", "SMD", "1.28", "0.45", "2.12",
         "https://www.mendeley.com/catalogue/3215e922-0ac4-3811-95ca-1214e857ade8/",
         "functional improvement (standardized mean difference = 1.28 (0.45, 2.12); p = 0.003; I2 = 84%)"),
        ("silva2022_pain", "silva2022", "Silva 2022 Diagnostics 12:2910", "hip_vs_no_intervention", "pain", "MD",
         "4.1", "2.1", "6.2", "https://medluna.com/article/36552918",
         "Very low quality evidence suggested short-term effects (≤3 months) of hip strengthening on pain intensity "
         "(MD of 4.1, 95% CI: 2.1 to 6.2; two trials, n = 48 participants)"),
    ]
    q_rogan = ("When comparing a combined hip and knee muscle strengthening with knee muscle strengthening alone, pain "
               "was reduced in the combined hip and knee-strengthening group (SMD -0.99; 95% CI -1.99 to 0.02; p = "
               "0.05), whereas function showed a SMD of 0.70 (95% CI 0.25 to 1.14; p = 0.002) again favoring the "
               "combined hip and knee-strengthening group.")
    q_hks = ("Six RCTs involving 241 patients (96.3% females) were included. HKS significantly improved pain "
             "(SMD=-1.29, 95% CI [-1.98, -0.59], p=0.0003, I2=87%) and functional activity (SMD=0.99, 95% CI "
             "[0.22, 1.76], p=0.01, I2=88%) compared to KS.")
    hks_url = ("https://discovery.researcher.life/article/the-efficacy-of-hip-and-knee-muscles-strengthening-versus-"
               "knee-muscle-strengthening-alone-in-managing-patellofemoral-pain-syndrome-a-systematic-review-and-"
               "meta-analysis/7337c535d6a73a008346ea9a7da97d94")
    q_ji = ("For the primary outcomes, all included treatments were superior to a wait-and-see approach: ... hip-and "
            "knee-focused exercise therapy (-1.32, -2.57 to -0.06), ... hip exercise (-1.10, -2.44 to 0.24), ... knee "
            "exercise (-0.92, -2.16 to 0.33)")
    other += [
        ("rogan2019_function", "rogan2019", "Rogan et al. J Strength Cond Res 2019;33:3174", "hip_knee_vs_knee_alone",
         "activity", "SMD", "0.70", "0.25", "1.14", "http://search.pedro.org.au/search-results/record-detail/58898",
         q_rogan),
        ("hks_vs_ks_crd42023451065_pain", "hks_vs_ks_crd42023451065",
         "HKS vs KS systematic review and meta-analysis (PROSPERO CRD42023451065; journal and year not verified)",
         "hip_knee_vs_knee_alone", "pain", "SMD", "-1.29", "-1.98", "-0.59", hks_url, q_hks),
        ("hks_vs_ks_crd42023451065_function", "hks_vs_ks_crd42023451065",
         "HKS vs KS systematic review and meta-analysis (PROSPERO CRD42023451065; journal and year not verified)",
         "hip_knee_vs_knee_alone", "activity", "SMD", "0.99", "0.22", "1.76", hks_url, q_hks),
        ("ji2023_hip_knee_vs_wait_pain", "ji2023", "Ji et al. 2023 network meta-analysis (medRxiv 2023.01.01.22284033; "
         "preprint)", "hip_knee_vs_wait_and_see", "pain", "not stated", "-1.32", "-2.57", "-0.06",
         "http://medrxiv.org/highwire/citation/600869/refworks-tagged", q_ji),
    ]
    counts = {"hks_vs_ks_crd42023451065_pain": ("6", "241"), "hks_vs_ks_crd42023451065_function": ("6", "241"),
              "silva2022_pain": ("2", "48")}
    for rid, review, citation, comparison, outcome, measure, est, lo, hi, url, quote in other:
        rows.append(dict(id=rid, review=review, citation=citation, comparison=comparison, outcome=outcome,
                         measure=measure, estimate=est, ci_low=lo, ci_high=hi,
                         k=counts.get(rid, ("", ""))[0], participants=counts.get(rid, ("", ""))[1],
                         model="network meta-analysis" if review == "ji2023" else "",
                         scale_note=("vs wait-and-see, not vs knee strengthening; worst pain; the abstract does "
                                     "not name the measure" if review == "ji2023" else
                                     "sign as published (check direction before comparing)"),
                         source_url=url, location="abstract", quote=quote, status="verified (abstract)"))
    rows.append(dict(id="hackshaw1997_main", review="hackshaw1997",
                     citation="Hackshaw AK, Law MR, Wald NJ. BMJ 1997;315:980-988",
                     comparison="spouse_smokes_vs_never_smoked", outcome="lung_cancer", measure="OR",
                     estimate="1.24", ci_low="1.13", ci_high="1.36", k="37", participants="",
                     model="not stated in the abstract", scale_note="ratio = 1 + excess risk / 100 (derived from the percentages)",
                     source_url="https://www.bmj.com/content/315/7114/980", location="abstract, Results",
                     quote=("The excess risk of lung cancer was 24% (95% confidence interval 13% to 36%) in "
                            "non-smokers who lived with a smoker (P<0.001)."),
                     status="verified (abstract); ratio derived"))
    return rows


def write(name, columns, rows):
    with open(DATA / name, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote data/{name}: {len(rows)} rows")


if __name__ == "__main__":
    write("outcomes.csv", OUTCOME_COLUMNS, outcomes())
    write("effects.csv", EFFECT_COLUMNS, effects())
    write("published.csv", PUBLISHED_COLUMNS, published())
