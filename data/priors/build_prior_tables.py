"""Write turner2015_table4.csv and rhodes2015_table3.csv: one row per published table cell.

The values were read (not copied as code) from R bayesmeta 3.4, file R/bayesmeta.R, the arrays
TurnerEtAlParameters (Turner 2015, Table IV) and RhodesEtAlParameters (Rhodes 2015, Table 3, medical area
"other"); the papers themselves were not available here, so every row says so in `verified_from`.
Run ``python data/priors/build_prior_tables.py`` to rewrite the CSVs (they are committed).
"""

import csv
from pathlib import Path

HERE = Path(__file__).parent
VERIFIED = ("read from R bayesmeta 3.4 source, R/bayesmeta.R ({array}); not checked against the paper's "
            "printed table")

TURNER_OUTCOMES = [
    ("all_cause_mortality", "all-cause mortality"),
    ("obstetric", "obstetric outcomes"),
    ("cause_specific_mortality", "cause-specific mortality / major morbidity event / composite"),
    ("resource_use", "resource use / hospital stay / process"),
    ("surgical_device", "surgical / device related success / failure"),
    ("withdrawals", "withdrawals / drop-outs"),
    ("internal_structure", "internal / structure-related outcomes"),
    ("general_physical_health", "general physical health indicators"),
    ("adverse_events", "adverse events"),
    ("infection", "infection / onset of new disease"),
    ("signs_symptoms", "signs / symptoms reflecting continuation / end of condition"),
    ("pain", "pain"),
    ("quality_of_life", "quality of life / functioning (dichotomized)"),
    ("mental_health", "mental health indicators"),
    ("biological_markers", "biological markers (dichotomized)"),
    ("subjective", "subjective outcomes (various)"),
]
TURNER_COMPARISONS = [
    ("pharmacological_vs_placebo", "pharmacological vs placebo / control"),
    ("pharmacological_vs_pharmacological", "pharmacological vs pharmacological"),
    ("non_pharmacological_vs_placebo", "non-pharmacological vs placebo / control"),
    ("non_pharmacological_vs_pharmacological", "non-pharmacological vs pharmacological"),
    ("non_pharmacological_vs_non_pharmacological", "non-pharmacological vs non-pharmacological"),
]
# mean of log(tau^2), one list per comparison type (column of Table IV), outcomes in the order above
TURNER_MEAN = [
    [-3.95, -3.52, -3.71, -2.34, -2.14, -2.99, -2.71, -2.29, -1.87, -2.49, -2.06, -1.83, -2.54, -2.12, -1.77, -2.70],
    [-4.18, -3.75, -3.95, -2.58, -2.37, -3.23, -2.94, -2.53, -2.10, -2.73, -2.29, -2.06, -2.78, -2.35, -2.00, -2.93],
    [-4.17, -3.74, -3.93, -2.56, -2.36, -3.21, -2.93, -2.51, -2.10, -2.71, -2.28, -2.05, -2.77, -2.34, -1.99, -2.92],
    [-2.92, -2.49, -2.68, -1.31, -1.11, -1.96, -1.67, -1.26, -0.84, -1.46, -1.03, -0.80, -1.51, -1.09, -0.74, -1.67],
    [-3.50, -3.08, -3.27, -1.90, -1.69, -2.55, -2.26, -1.85, -1.43, -2.05, -1.61, -1.38, -2.10, -1.67, -1.33, -2.26],
]
TURNER_SD = [
    [1.34, 1.74, 1.74, 1.74, 1.74, 1.74, 1.74, 1.53, 1.52, 1.52, 1.51, 1.52, 1.54, 1.53, 1.52, 1.52],
    [1.41, 1.79, 1.79, 1.79, 1.79, 1.79, 1.79, 1.58, 1.58, 1.58, 1.58, 1.58, 1.60, 1.60, 1.58, 1.58],
    [1.55, 1.91, 1.91, 1.91, 1.91, 1.91, 1.92, 1.72, 1.71, 1.71, 1.71, 1.71, 1.73, 1.72, 1.71, 1.71],
    [1.02, 1.50, 1.51, 1.50, 1.50, 1.51, 1.51, 1.25, 1.24, 1.24, 1.24, 1.25, 1.27, 1.27, 1.24, 1.25],
    [1.26, 1.68, 1.68, 1.68, 1.68, 1.68, 1.68, 1.46, 1.45, 1.45, 1.45, 1.45, 1.47, 1.47, 1.45, 1.45],
]

RHODES_OUTCOMES = [
    ("obstetric", "obstetric outcome"),
    ("resource_use", "resource use and hospital stay / process"),
    ("structure", "internal and external structure-related outcome"),
    ("pain_function", "general physical health and adverse event and pain and quality of life / functioning"),
    ("signs_symptoms", "signs / symptoms reflecting continuation / end of condition and infection / onset of "
                       "new acute / chronic disease"),
    ("mental_health", "mental health outcome"),
    ("biological_marker", "biological marker"),
    ("subjective", "various subjectively measured outcomes"),
]
RHODES_COMPARISONS = [
    ("pharmacological_vs_placebo", "pharmacological vs placebo / control"),
    ("pharmacological_vs_pharmacological", "pharmacological vs pharmacological"),
    ("non_pharmacological", "non-pharmacological (any)"),
]
RHODES_LOCATION = [
    [-4.13, -2.55, -2.43, -3.16, -3.00, -2.99, -3.41, -2.76],
    [-4.40, -2.83, -2.70, -3.44, -3.27, -3.27, -3.68, -3.03],
    [-3.99, -2.41, -2.29, -3.02, -2.86, -3.85, -3.27, -2.62],
]
RHODES_SCALE = [
    [2.34, 2.73, 2.50, 2.50, 2.50, 2.16, 2.83, 2.58],
    [2.31, 2.70, 2.46, 2.44, 2.47, 2.14, 2.78, 2.59],
    [2.11, 2.57, 2.32, 2.27, 2.33, 1.93, 2.66, 2.41],
]

TURNER_CITATION = ("Turner RM, Jackson D, Wei Y, Thompson SG, Higgins JPT (2015) Predictive distributions for "
                   "between-study heterogeneity and simple methods for their application in Bayesian "
                   "meta-analysis. Stat Med 34(6):984-998")
RHODES_CITATION = ("Rhodes KM, Turner RM, Higgins JPT (2015) Predictive distributions were developed for the "
                   "extent of heterogeneity in meta-analyses of continuous outcome data. J Clin Epidemiol "
                   "68(1):52-60")
FIELDS = ["table", "outcome", "outcome_label", "comparison", "comparison_label", "distribution", "on",
          "measure", "param1_name", "param1", "param2_name", "param2", "citation", "location", "verified_from"]


def write(path, rows):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main():
    rows = []
    for c, (comparison, clabel) in enumerate(TURNER_COMPARISONS):
        for o, (outcome, olabel) in enumerate(TURNER_OUTCOMES):
            rows.append(dict(table="turner2015", outcome=outcome, outcome_label=olabel, comparison=comparison,
                             comparison_label=clabel, distribution="log-normal", on="tau2", measure="OR",
                             param1_name="mean_log_tau2", param1=TURNER_MEAN[c][o], param2_name="sd_log_tau2",
                             param2=TURNER_SD[c][o], citation=TURNER_CITATION,
                             location=f"Table IV, outcome '{olabel}', comparison '{clabel}'",
                             verified_from=VERIFIED.format(array="TurnerEtAlParameters")))
    rows.append(dict(table="turner2015", outcome="any", outcome_label="any (marginal)", comparison="any",
                     comparison_label="any (marginal)", distribution="log-normal", on="tau2", measure="OR",
                     param1_name="mean_log_tau2", param1=-2.56, param2_name="sd_log_tau2", param2=1.74,
                     citation=TURNER_CITATION, location="p. 993, the marginal setting (all outcomes, comparisons)",
                     verified_from=VERIFIED.format(array="TurnerEtAlPrior, outcome=NA")))
    write(HERE / "turner2015_table4.csv", rows)
    rows = []
    for c, (comparison, clabel) in enumerate(RHODES_COMPARISONS):
        for o, (outcome, olabel) in enumerate(RHODES_OUTCOMES):
            rows.append(dict(table="rhodes2015", outcome=outcome, outcome_label=olabel, comparison=comparison,
                             comparison_label=clabel, distribution="log-t5", on="tau2", measure="SMD",
                             param1_name="location_log_tau2", param1=RHODES_LOCATION[c][o],
                             param2_name="scale_log_tau2", param2=RHODES_SCALE[c][o], citation=RHODES_CITATION,
                             location=f"Table 3 (medical area other than respiratory or cancer), outcome "
                                      f"'{olabel}', comparison '{clabel}'",
                             verified_from=VERIFIED.format(array="RhodesEtAlParameters, area 'other'")))
    rows.append(dict(table="rhodes2015", outcome="any", outcome_label="any (marginal)", comparison="any",
                     comparison_label="any (marginal)", distribution="log-t5", on="tau2", measure="SMD",
                     param1_name="location_log_tau2", param1=-3.44, param2_name="scale_log_tau2", param2=2.59,
                     citation=RHODES_CITATION, location="Section 3.3, the general (marginal) setting",
                     verified_from=VERIFIED.format(array="RhodesEtAlPrior, outcome=NA")))
    write(HERE / "rhodes2015_table3.csv", rows)


if __name__ == "__main__":
    main()
