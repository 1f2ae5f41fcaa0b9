# Writes tests/fixtures/metafor_reference.json: reference values from R metafor for every tau2
# estimator x CI method on several metadat datasets and synthetic edge cases.
#
# Run from the repository root:   Rscript validation/make_metafor_fixtures.R
# Needs the Debian packages r-cran-metafor r-cran-metadat r-cran-jsonlite (apt-get install ...).
# The tests read the committed JSON; CI never needs R.
#
# metafor's iterative fits stop at loose default tolerances (REML threshold 1e-5, uniroot tol about
# 1e-4). For 1e-6 agreement every fit here runs with tight control, and the Q-profile search range
# (tau2.max) is widened so that a bound is never the edge of the search range.

suppressPackageStartupMessages({
  library(metafor)
  library(jsonlite)
})

tight <- list(threshold = 1e-10, tol = 1e-13, maxiter = 10000, tau2.max = 1e7)
methods <- c("FE", "DL", "REML", "ML", "PM", "SJ", "HE", "EB", "HS")
tests <- c("z", "knha")

num <- function(x) if (is.null(x) || length(x) == 0) NA_real_ else as.numeric(x)

fit_case <- function(name, yi, vi, slab) {
  out <- list()
  for (method in methods) {
    for (test in tests) {
      res <- tryCatch(
        suppressWarnings(rma(yi, vi, method = method, test = test, control = tight)),
        error = function(e) NULL)
      if (is.null(res)) next
      pred <- predict(res)
      pred_t <- predict(res, pi.type = "t")
      pred_riley <- predict(res, pi.type = "riley")
      ci <- list(tau2 = c(NA, NA), I2 = c(NA, NA), H2 = c(NA, NA))
      if (method != "FE" && res$k > 1) {
        cf <- tryCatch(suppressWarnings(confint(res, control = tight)), error = function(e) NULL)
        if (!is.null(cf)) {
          ci$tau2 <- cf$random["tau^2", c("ci.lb", "ci.ub")]
          ci$I2 <- cf$random["I^2(%)", c("ci.lb", "ci.ub")]
          ci$H2 <- cf$random["H^2", c("ci.lb", "ci.ub")]
        }
      }
      ll <- if (method %in% c("ML", "REML")) num(logLik(res)) else NA_real_
      out[[length(out) + 1]] <- list(
        dataset = name, method = method, test = test, k = res$k,
        yi = as.numeric(yi), vi = as.numeric(vi), study = as.character(slab),
        estimate = num(res$beta), se = num(res$se), statistic = num(res$zval), p = num(res$pval),
        ci_low = num(res$ci.lb), ci_high = num(res$ci.ub),
        tau2 = num(res$tau2), i2 = num(res$I2), h2 = num(res$H2),
        q = num(res$QE), q_p = num(res$QEp),
        tau2_ci_low = num(ci$tau2[1]), tau2_ci_high = num(ci$tau2[2]),
        i2_ci_low = num(ci$I2[1]), i2_ci_high = num(ci$I2[2]),
        h2_ci_low = num(ci$H2[1]), h2_ci_high = num(ci$H2[2]),
        pi_low = num(pred$pi.lb), pi_high = num(pred$pi.ub),
        pi_t_low = num(pred_t$pi.lb), pi_t_high = num(pred_t$pi.ub),
        pi_riley_low = num(pred_riley$pi.lb), pi_riley_high = num(pred_riley$pi.ub),
        weights = as.numeric(weights(res)), loglik = ll)
    }
  }
  out
}

cases <- list()
add <- function(x) cases <<- c(cases, x)

# dat.normand1999: length of hospital stay, specialist vs routine care (MD and SMD)
d <- dat.normand1999
md <- escalc(measure = "MD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = d)
add(fit_case("normand1999_MD", md$yi, md$vi, d$source))
smd <- escalc(measure = "SMD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = d)
add(fit_case("normand1999_SMD", smd$yi, smd$vi, d$source))
# dat.raudenbush1985: teacher expectancy (standardized mean differences as given)
r <- dat.raudenbush1985
add(fit_case("raudenbush1985", r$yi, r$vi, r$author))
# dat.bcg: BCG vaccine, log risk ratios
b <- escalc(measure = "RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
add(fit_case("bcg_logRR", b$yi, b$vi, paste(dat.bcg$author, dat.bcg$year)))
# dat.hackshaw1998: passive smoking and lung cancer, log odds ratios as given
h <- dat.hackshaw1998
add(fit_case("hackshaw1998", h$yi, h$vi, paste(h$author, h$year)))
# synthetic: k = 2
add(fit_case("synthetic_k2", c(-1.2, 0.4), c(0.30, 0.45), c("A", "B")))
# synthetic: homogeneous (Q < k - 1, so every truncated estimator gives tau2 = 0)
add(fit_case("synthetic_homogeneous", c(0.50, 0.52, 0.49, 0.51, 0.50),
             c(0.04, 0.05, 0.03, 0.06, 0.05), paste0("S", 1:5)))
# synthetic: large heterogeneity on a 0-10 pain scale
add(fit_case("synthetic_heterogeneous", c(-3.1, -0.2, -1.8, -4.5, 0.6, -2.2),
             c(0.40, 0.15, 0.55, 0.90, 0.20, 0.35), paste0("T", 1:6)))

# effect-size reference values (escalc) for the arm-level tests
es <- list(
  normand_md = list(
    data = d[, c("n1i", "m1i", "sd1i", "n2i", "m2i", "sd2i")],
    md_ls = escalc("MD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = d, vtype = "LS"),
    md_ho = escalc("MD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = d, vtype = "HO"),
    smd = smd),
  bcg = list(data = dat.bcg[, c("tpos", "tneg", "cpos", "cneg")], rr = b,
             or = escalc(measure = "OR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)))
big <- escalc("SMD", m1i = c(1.0, 0.2), sd1i = c(2.0, 1.0), n1i = c(2500, 400),
              m2i = c(0.5, 0.0), sd2i = c(2.2, 1.1), n2i = c(2600, 450))
effects <- list(
  normand = list(n1 = d$n1i, m1 = d$m1i, sd1 = d$sd1i, n2 = d$n2i, m2 = d$m2i, sd2 = d$sd2i,
                 md_yi = as.numeric(es$normand_md$md_ls$yi), md_vi = as.numeric(es$normand_md$md_ls$vi),
                 md_ho_vi = as.numeric(es$normand_md$md_ho$vi),
                 smd_yi = as.numeric(smd$yi), smd_vi = as.numeric(smd$vi)),
  large_n = list(n1 = c(2500, 400), m1 = c(1.0, 0.2), sd1 = c(2.0, 1.0),
                 n2 = c(2600, 450), m2 = c(0.5, 0.0), sd2 = c(2.2, 1.1),
                 smd_yi = as.numeric(big$yi), smd_vi = as.numeric(big$vi)),
  bcg = list(ai = dat.bcg$tpos, n1 = dat.bcg$tpos + dat.bcg$tneg,
             ci = dat.bcg$cpos, n2 = dat.bcg$cpos + dat.bcg$cneg,
             rr_yi = as.numeric(b$yi), rr_vi = as.numeric(b$vi),
             or_yi = as.numeric(es$bcg$or$yi), or_vi = as.numeric(es$bcg$or$vi)))

out <- list(
  generator = "validation/make_metafor_fixtures.R",
  metafor_version = as.character(packageVersion("metafor")),
  metadat_version = as.character(packageVersion("metadat")),
  r_version = R.version.string,
  control = tight,
  cases = cases,
  effects = effects)
dir.create("tests/fixtures", showWarnings = FALSE, recursive = TRUE)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", pretty = FALSE),
           "tests/fixtures/metafor_reference.json")
cat("wrote", length(cases), "cases\n")
