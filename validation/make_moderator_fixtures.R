# Writes tests/fixtures/metafor_moderators.json: metafor 3.8-1 meta-regressions of dat.bcg (log risk
# ratios) with moderators written as formulas, a numeric one (ablat) and a factor (alloc, reference level
# "alternate" by R's sorted order, and relevelled to "random"), by REML with Wald (z) and Knapp-Hartung
# (knha) tests, and the Wald tests of the alloc terms (anova btt). Run from the repository root:
#   Rscript validation/make_moderator_fixtures.R
suppressPackageStartupMessages({ library(metafor); library(jsonlite) })
tight <- list(threshold = 1e-12, maxiter = 10000)
dat <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
dat$alloc_random <- relevel(factor(dat$alloc), ref = "random")

one <- function(formula, method, test, btt, label) {
  res <- rma(yi, vi, mods = formula, data = dat, method = method, test = test, control = tight)
  an <- anova(res, btt = btt)
  list(label = label, formula = deparse(formula), method = method, test = test,
       names = rownames(res$beta), estimate = as.numeric(res$beta), se = as.numeric(res$se),
       statistic = as.numeric(res$zval), p = as.numeric(res$pval), ci_low = as.numeric(res$ci.lb),
       ci_high = as.numeric(res$ci.ub), tau2 = res$tau2, i2 = res$I2, h2 = res$H2, r2 = res$R2,
       qe = res$QE, qe_p = res$QEp, qm = res$QM, qm_p = res$QMp, qm_df = c(res$QMdf[1], res$QMdf[2]),
       btt = btt, btt_names = rownames(res$beta)[btt], anova_qm = an$QM, anova_p = an$QMp,
       anova_df = c(an$QMdf[1], an$QMdf[2]))
}

cases <- list()
for (test in c("z", "knha")) {
  cases[[length(cases) + 1]] <- one(~ ablat + alloc, "REML", test, 3:4, "ablat + alloc")
  cases[[length(cases) + 1]] <- one(~ ablat + alloc_random, "REML", test, 3:4, "ablat + alloc, reference random")
  cases[[length(cases) + 1]] <- one(~ ablat * alloc, "REML", test, 5:6, "ablat * alloc (interaction)")
}
out <- list(generated_by = "validation/make_moderator_fixtures.R",
            metafor_version = as.character(packageVersion("metafor")),
            r_version = R.version.string, data = "metadat dat.bcg, escalc(measure = 'RR')",
            control = tight, cases = cases)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, pretty = TRUE), "tests/fixtures/metafor_moderators.json")
