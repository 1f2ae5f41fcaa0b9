# Writes tests/fixtures/metafor_leave1out.json: metafor's leave1out() for several estimators and both
# CI methods on dat.bcg (log RR) and dat.normand1999 (MD). Run from the repository root:
#   Rscript validation/make_leave1out_fixtures.R
suppressPackageStartupMessages({ library(metafor); library(jsonlite) })
tight <- list(threshold = 1e-10, tol = 1e-13, maxiter = 10000, tau2.max = 1e7)
b <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
n <- escalc(measure = "MD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = dat.normand1999)
cases <- list()
for (d in list(list(name = "bcg_logRR", yi = b$yi, vi = b$vi), list(name = "normand1999_MD", yi = n$yi, vi = n$vi))) {
  for (method in c("DL", "REML", "PM", "FE")) for (test in c("z", "knha")) {
    res <- suppressWarnings(rma(d$yi, d$vi, method = method, test = test, control = tight))
    l <- suppressWarnings(leave1out(res, control = tight))
    cases[[length(cases) + 1]] <- list(dataset = d$name, method = method, test = test,
      yi = as.numeric(d$yi), vi = as.numeric(d$vi), estimate = l$estimate, se = l$se,
      ci_low = l$ci.lb, ci_high = l$ci.ub, p = l$pval, q = l$Q, q_p = l$Qp, tau2 = l$tau2, i2 = l$I2, h2 = l$H2)
  }
}
writeLines(toJSON(list(generator = "validation/make_leave1out_fixtures.R",
                       metafor_version = as.character(packageVersion("metafor")), cases = cases),
                  auto_unbox = TRUE, digits = NA, na = "null"), "tests/fixtures/metafor_leave1out.json")
cat("wrote", length(cases), "cases\n")
