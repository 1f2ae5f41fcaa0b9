# Writes tests/fixtures/metafor_sensitivity.json: metafor's influence(), cumul(), regtest() in both
# forms, ranktest(), trimfill() (L0 and R0), meta-regression (rma with mods), subgroup analyses and
# exact permutation tests. Run from the repository root:
#   Rscript validation/make_sensitivity_fixtures.R
suppressPackageStartupMessages({ library(metafor); library(jsonlite) })
tight <- list(threshold = 1e-10, tol = 1e-13, maxiter = 10000, tau2.max = 1e7)
fit <- function(yi, vi, method, test, ...) suppressWarnings(rma(yi, vi, method = method, test = test, control = tight, ...))

b <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
n <- escalc(measure = "MD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = dat.normand1999)
r <- dat.raudenbush1985
h <- dat.hackshaw1998
sets <- list(
  list(name = "bcg_logRR", yi = b$yi, vi = b$vi, year = dat.bcg$year, x = dat.bcg$ablat, group = dat.bcg$alloc),
  list(name = "normand1999_MD", yi = n$yi, vi = n$vi, year = seq_along(n$yi), x = n$n1i + n$n2i, group = rep(c("a", "b", "c"), length.out = 9)),
  list(name = "raudenbush1985", yi = r$yi, vi = r$vi, year = r$year, x = r$weeks, group = r$tester),
  list(name = "hackshaw1998", yi = h$yi, vi = h$vi, year = h$year, x = h$year, group = h$design))

num <- function(x) as.numeric(x)
cases <- list()
for (d in sets) {
  for (method in c("DL", "REML", "PM", "FE")) for (test in c("z", "knha")) {
    res <- fit(d$yi, d$vi, method, test)
    inf <- suppressWarnings(influence(res))$inf
    cu <- suppressWarnings(cumul(res, order = d$year))
    lm_t <- regtest(res, model = "lm")
    lm_coef <- coef(summary(lm_t$fit))
    rma_t <- regtest(res)
    rk <- ranktest(res)
    tf <- list()
    if (method != "FE" || TRUE) {
      for (est in c("L0", "R0")) {
        t <- suppressWarnings(trimfill(res, estimator = est, control = tight))
        # metafor refits the filled data without the model's test (Wald even for knha) when k0 > 0;
        # pfps-meta keeps the model's test, so the reference is metafor's own refit with that test.
        rf <- if (t$k0 > 0) fit(t$yi, t$vi, method, test) else t
        tf[[est]] <- list(k0 = t$k0, side = t$side, estimate = num(rf$beta), ci_low = rf$ci.lb, ci_high = rf$ci.ub,
                          tau2 = rf$tau2, se = rf$se, metafor_trimfill_ci_low = t$ci.lb, metafor_trimfill_ci_high = t$ci.ub)
      }
    }
    mr <- fit(d$yi, d$vi, method, test, mods = ~ d$x)
    sg_common <- fit(d$yi, d$vi, method, test, mods = ~ factor(d$group))
    groups <- sort(unique(d$group))
    sub <- lapply(groups, function(g) {
      s <- d$group == g
      if (sum(s) < 2) return(NULL)
      f <- fit(d$yi[s], d$vi[s], method, test)
      list(group = g, k = f$k, estimate = num(f$beta), se = f$se, ci_low = f$ci.lb, ci_high = f$ci.ub, tau2 = f$tau2)
    })
    sub <- Filter(Negate(is.null), sub)
    between <- NULL
    if (length(sub) >= 2) {
      bt <- rma(sapply(sub, `[[`, "estimate"), sapply(sub, `[[`, "se")^2, method = "FE")
      between <- list(q = bt$QE, df = bt$k - 1, p = bt$QEp)
    }
    cases[[length(cases) + 1]] <- list(
      dataset = d$name, method = method, test = test, yi = num(d$yi), vi = num(d$vi), year = num(d$year),
      x = num(d$x), group = as.character(d$group),
      influence = list(rstudent = inf$rstudent, dffits = inf$dffits, cook_d = inf$cook.d, cov_r = inf$cov.r,
                       tau2_del = inf$tau2.del, q_del = inf$QE.del, hat = inf$hat, weight = inf$weight),
      cumulative = list(estimate = cu$estimate, ci_low = cu$ci.lb, ci_high = cu$ci.ub,
                        tau2 = cu$tau2, i2 = cu$I2, p = cu$pval),
      egger_classic = list(intercept = lm_coef[2, 1], se = lm_coef[2, 2], statistic = lm_t$zval, df = lm_t$dfs, p = lm_t$pval,
                           limit_estimate = lm_t$est),
      egger_mixed = list(coefficient = num(rma_t$fit$beta[2]), se = rma_t$fit$se[2], statistic = rma_t$zval, df = if (is.null(rma_t$dfs)) NA else rma_t$dfs, p = rma_t$pval,
                         limit_estimate = rma_t$est),
      begg = list(tau = num(rk$tau), p = rk$pval),
      trimfill = tf,
      metareg = list(beta = num(mr$beta), se = mr$se, statistic = mr$zval, p = mr$pval, ci_low = mr$ci.lb, ci_high = mr$ci.ub,
                     tau2 = mr$tau2, i2 = mr$I2, h2 = mr$H2, qe = mr$QE, qe_p = mr$QEp, qm = mr$QM, qm_p = mr$QMp,
                     r2 = if (is.null(mr$R2)) NA else mr$R2),
      subgroup_common = list(qm = sg_common$QM, qm_p = sg_common$QMp, tau2 = sg_common$tau2),
      subgroups = sub, subgroup_between = between)
  }
}
# exact permutation tests (sign flips for an intercept-only model: 2^k fits)
perm <- list()
for (method in c("DL", "REML")) for (test in c("z", "knha")) {
  res <- fit(n$yi, n$vi, method, test)
  p <- suppressWarnings(permutest(res, exact = TRUE, progbar = FALSE, control = tight))
  perm[[length(perm) + 1]] <- list(dataset = "normand1999_MD", method = method, test = test, yi = num(n$yi), vi = num(n$vi), p = p$pval)
}
writeLines(toJSON(list(generator = "validation/make_sensitivity_fixtures.R",
                       metafor_version = as.character(packageVersion("metafor")), cases = cases, permutation = perm),
                  auto_unbox = TRUE, digits = NA, na = "null"), "tests/fixtures/metafor_sensitivity.json")
cat("wrote", length(cases), "cases and", length(perm), "permutation cases\n")
