# Writes tests/fixtures/metafor_conventions.json: what issue 8 (one home for conventions) is checked
# against. Run from the repository root:   Rscript validation/make_conventions_fixtures.R
#  - escalc() for the measures in pfps_meta.effects.measures beyond MD/SMD-LS: SMD with vtype LS, UB and AV
#    (UB is R meta's default SMD variance since meta 6.0), ROM (log ratio of means), RD (risk difference);
#  - subgroup estimates with a common tau2 (rma(mods = ~ factor(g) - 1)) and the test of differences
#    (rma(mods = ~ factor(g))) at level 90 with test "z" and "knha";
#  - pooling with the estimate given as a 90% CI (conv.wald's formula at level 90) and fitted at level 95.
suppressPackageStartupMessages({ library(metafor); library(jsonlite) })
tight <- list(threshold = 1e-10, tol = 1e-13, maxiter = 10000, tau2.max = 1e7)
n <- dat.normand1999
escalc_cases <- list()
for (vt in c("LS", "UB", "AV")) {
  e <- escalc("SMD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = n, vtype = vt)
  escalc_cases[[length(escalc_cases) + 1]] <- list(dataset = "normand1999", measure = "SMD", vtype = vt,
                                                   yi = as.numeric(e$yi), vi = as.numeric(e$vi))
}
e <- escalc("ROM", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = n)
escalc_cases[[length(escalc_cases) + 1]] <- list(dataset = "normand1999", measure = "ROM", vtype = "LS",
                                                 yi = as.numeric(e$yi), vi = as.numeric(e$vi))
b <- dat.bcg
e <- escalc("RD", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = b)
escalc_cases[[length(escalc_cases) + 1]] <- list(dataset = "bcg", measure = "RD", vtype = "LS",
                                                 yi = as.numeric(e$yi), vi = as.numeric(e$vi))
# a table with zero cells, to check the continuity correction for RD
z <- data.frame(ai = c(0, 5, 3), n1i = c(10, 20, 30), ci = c(2, 5, 0), n2i = c(12, 20, 30))
e <- escalc("RD", ai = ai, n1i = n1i, ci = ci, n2i = n2i, data = z)
escalc_cases[[length(escalc_cases) + 1]] <- list(dataset = "zero_cells", measure = "RD", vtype = "LS",
                                                 events_exp = z$ai, n_exp = z$n1i, events_ctrl = z$ci,
                                                 n_ctrl = z$n2i, yi = as.numeric(e$yi), vi = as.numeric(e$vi))

# subgroups with a common tau2 at a 90% level
rr <- escalc("RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = b)
subgroup_cases <- list()
for (method in c("DL", "REML")) for (test in c("z", "knha")) {
  cells <- suppressWarnings(rma(yi, vi, mods = ~ factor(alloc) - 1, data = rr, method = method, test = test,
                                level = 90, control = tight))
  diff <- suppressWarnings(rma(yi, vi, mods = ~ factor(alloc), data = rr, method = method, test = test,
                               level = 90, control = tight))
  subgroup_cases[[length(subgroup_cases) + 1]] <- list(
    dataset = "bcg_logRR", groups = sort(unique(b$alloc)), method = method, test = test, level = 0.90,
    estimate = as.numeric(cells$beta), se = as.numeric(cells$se), ci_low = as.numeric(cells$ci.lb),
    ci_high = as.numeric(cells$ci.ub), tau2 = cells$tau2, qm = diff$QM, qm_p = diff$QMp)
}

# a CI read at its own level (90%) and a fit reported at another (95%)
h <- dat.hackshaw1998
ci90 <- data.frame(yi = h$yi, lo = h$yi - qnorm(0.95) * sqrt(h$vi), hi = h$yi + qnorm(0.95) * sqrt(h$vi))
# metafor 3.8 has no conv.wald() (added in 4.0); this is its formula: sei = (ci.ub - ci.lb) / (2 qnorm(1 - alpha/2))
cw <- data.frame(yi = ci90$yi, vi = ((ci90$hi - ci90$lo) / (2 * qnorm(0.95)))^2)
res <- rma(yi, vi, data = cw, method = "DL", level = 95, control = tight)
input_level <- list(dataset = "hackshaw1998", yi = ci90$yi, ci_low = ci90$lo, ci_high = ci90$hi,
                    input_level = 0.90, level = 0.95, vi = as.numeric(cw$vi), estimate = as.numeric(res$beta),
                    ci_low_pooled = res$ci.lb, ci_high_pooled = res$ci.ub)

out <- list(metafor_version = as.character(packageVersion("metafor")), escalc = escalc_cases,
            subgroups = subgroup_cases, input_level = input_level)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/fixtures/metafor_conventions.json")
cat("wrote tests/fixtures/metafor_conventions.json\n")
