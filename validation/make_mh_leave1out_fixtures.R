# leave1out() of Mantel-Haenszel and Peto fits (metafor 3.8-1) on dat.bcg, for
# tests/test_mantel_haenszel.py::test_bcg_leave_one_out_of_mantel_haenszel_and_peto_as_metafor
# Run from the repository root: Rscript validation/make_mh_leave1out_fixtures.R
suppressMessages({library(metafor); library(jsonlite)})
dat <- dat.bcg
one <- function(fit) {
  l <- leave1out(fit)
  list(estimate = l$estimate, se = l$se, ci_low = l$ci.lb, ci_high = l$ci.ub, p = l$pval, q = l$Q, i2 = l$I2)
}
out <- list(
  metafor = as.character(packageVersion("metafor")),
  mh_rr = one(rma.mh(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat)),
  mh_or = one(rma.mh(measure = "OR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat)),
  mh_rd = one(rma.mh(measure = "RD", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat)),
  peto = one(rma.peto(ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat))
)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE), "tests/fixtures/mh/leave1out.json")
