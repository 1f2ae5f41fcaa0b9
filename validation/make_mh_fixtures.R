# Writes tests/fixtures/mh/metafor_mh.json (and the CSV inputs beside it): the Mantel-Haenszel and Peto
# reference values that tests/test_mantel_haenszel.py checks pfps_meta.models.mantel_haenszel against.
# Run from the repository root:   Rscript validation/make_mh_fixtures.R
#  - rma.mh(measure = "OR" / "RR" / "RD") and rma.peto() on dat.bcg (no zero cells), on
#    dat.nielweise2007 (zero cells and one table with no events in either arm), and on one study of each;
#  - rma.mh's correction options: add / to / drop00 given as one value (escalc part only, the MH sums keep
#    metafor's add = 0, to = "none", drop00 = FALSE) and as two values (the MH sums corrected as well);
#  - RevMan 5's random-effects Mantel-Haenszel ("MH_DL"): no metafor function fits it, so the reference is
#    metafor's pieces put together as RevMan 5's statistical algorithms describe (Deeks & Higgins 2010):
#    Q from rma.mh, the DerSimonian-Laird tau2 = max(0, (Q - df) / (sum w - sum w^2 / sum w)) with w = 1/vi,
#    then rma(yi, vi, tau2 = tau2) for the estimate, CI and weights();
#  - per case: the model statistics, the CMH / Breslow-Day / Tarone tests (OR), the study yi, vi
#    (escalc with the first add / to / drop00), weights() in percent and the ML fit statistics.
# rma.mh and rma.peto are closed-form (no iteration), so no control settings are needed.
suppressPackageStartupMessages({ library(metafor); library(jsonlite) })
options(na.action = "na.pass")            # weights() and yi.f keep one entry per table (NA where dropped)
out_dir <- "tests/fixtures/mh"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

bcg <- data.frame(study = paste(dat.bcg$author, dat.bcg$year), events_exp = dat.bcg$tpos,
                  n_exp = dat.bcg$tpos + dat.bcg$tneg, events_ctrl = dat.bcg$cpos,
                  n_ctrl = dat.bcg$cpos + dat.bcg$cneg)
niel <- data.frame(study = paste(dat.nielweise2007$author, dat.nielweise2007$year),
                   events_exp = dat.nielweise2007$ai, n_exp = dat.nielweise2007$n1i,
                   events_ctrl = dat.nielweise2007$ci, n_ctrl = dat.nielweise2007$n2i,
                   source = paste("Niel-Weise BS et al. (2007) J Antimicrob Chemother 60(2):214-224;",
                                  "transcribed in R package metadat", packageVersion("metadat"),
                                  "dat.nielweise2007 (ai/n1i = anti-infective catheter, ci/n2i = standard)"))
write.csv(niel, file.path(out_dir, "nielweise2007.csv"), row.names = FALSE)
datasets <- list(bcg = bcg, nielweise2007 = niel, bcg_k1 = bcg[1, ])

num <- function(x) if (length(x) == 0 || is.null(x)) NA else as.numeric(x)

one_case <- function(name, measure, method, args = list()) {
  d <- datasets[[name]]
  base <- list(ai = d$events_exp, n1i = d$n_exp, ci = d$events_ctrl, n2i = d$n_ctrl)
  if (method == "PETO") {
    fit <- do.call(rma.peto, c(base, args))
  } else {
    fit <- do.call(rma.mh, c(base, list(measure = measure), args))
  }
  if (method == "MH_DL") return(revman_random(name, measure, args, fit))
  res <- list(dataset = name, measure = measure, method = method, options = args,
              k = fit$k, k_yi = fit$k.yi, estimate = num(fit$beta), se = num(fit$se), zval = num(fit$zval),
              pval = num(fit$pval), ci_low = num(fit$ci.lb), ci_high = num(fit$ci.ub),
              q = num(fit$QE), q_p = num(fit$QEp), i2 = num(fit$I2), h2 = num(fit$H2),
              yi = as.numeric(fit$yi.f), vi = as.numeric(fit$vi.f), weight = as.numeric(weights(fit)),
              loglik = num(fit$fit.stats["ll", "ML"]), deviance = num(fit$fit.stats["dev", "ML"]),
              aic = num(fit$fit.stats["AIC", "ML"]), bic = num(fit$fit.stats["BIC", "ML"]),
              aicc = num(fit$fit.stats["AICc", "ML"]))
  if (method == "MH" && measure == "OR") {
    res <- c(res, list(co = num(fit$CO), co_p = num(fit$COp), cmh = num(fit$MH), cmh_p = num(fit$MHp),
                       bd = num(fit$BD), bd_p = num(fit$BDp), tarone = num(fit$TA), tarone_p = num(fit$TAp),
                       k_pos = num(fit$k.pos)))
  }
  res
}

revman_random <- function(name, measure, args, fit) {
  w <- 1 / fit$vi
  df <- fit$k.yi - 1
  tau2 <- if (df > 0) max(0, (fit$QE - df) / (sum(w) - sum(w^2) / sum(w))) else 0
  re <- rma(fit$yi, fit$vi, tau2 = tau2, level = if (is.null(args$level)) 95 else args$level)
  weight <- rep(NA_real_, length(fit$yi.f))
  weight[!is.na(fit$yi.f)] <- weights(re)
  list(dataset = name, measure = measure, method = "MH_DL", options = args, k = fit$k, k_yi = fit$k.yi,
       estimate = num(re$beta), se = num(re$se), zval = num(re$zval), pval = num(re$pval),
       ci_low = num(re$ci.lb), ci_high = num(re$ci.ub), tau2 = tau2, q = num(fit$QE), q_p = num(fit$QEp),
       i2 = num(fit$I2), h2 = num(fit$H2), yi = as.numeric(fit$yi.f), vi = as.numeric(fit$vi.f),
       weight = weight, loglik = NA, deviance = NA, aic = NA, bic = NA, aicc = NA)
}

cases <- list()
add_case <- function(...) cases[[length(cases) + 1]] <<- one_case(...)
for (name in names(datasets)) {
  for (measure in c("OR", "RR", "RD")) add_case(name, measure, "MH")
  add_case(name, "OR", "PETO")
}
# correction options on the data with zero cells
for (measure in c("OR", "RR", "RD")) {
  add_case("nielweise2007", measure, "MH", list(add = 0.5, to = "all"))
  add_case("nielweise2007", measure, "MH", list(add = c(0.5, 0.5), to = c("only0", "only0")))
  add_case("nielweise2007", measure, "MH", list(drop00 = c(TRUE, TRUE)))
  add_case("nielweise2007", measure, "MH", list(drop00 = FALSE, to = "if0all", add = 0.25))
}
add_case("nielweise2007", "OR", "MH", list(correct = FALSE))
add_case("nielweise2007", "OR", "MH", list(add = c(0.5, 0.5), to = c("all", "all")))
add_case("nielweise2007", "OR", "PETO", list(add = 0.5, to = "all"))
add_case("nielweise2007", "OR", "PETO", list(drop00 = c(TRUE, TRUE)))
add_case("bcg", "RR", "MH", list(level = 90))
for (name in names(datasets)) for (measure in c("OR", "RR", "RD")) add_case(name, measure, "MH_DL")
add_case("bcg", "OR", "MH_DL", list(level = 90))

out <- list(metafor = as.character(packageVersion("metafor")), metadat = as.character(packageVersion("metadat")),
            cases = cases)
writeLines(toJSON(out, auto_unbox = TRUE, digits = NA, na = "null", null = "null", pretty = TRUE),
           file.path(out_dir, "metafor_mh.json"))
cat("wrote", length(cases), "cases\n")
