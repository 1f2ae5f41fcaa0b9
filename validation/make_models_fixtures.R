# Writes tests/fixtures/models_inputs.json: the references of tests/test_models_inputs.py (issue 15, items 5, 7).
# Run from the repository root:   Rscript validation/make_models_fixtures.R
#  - a meta-regression without an intercept (yi ~ 0 + ablat on dat.bcg, log RR), REML and ML, fitted twice:
#    rma.uni(), which estimates tau2 and QE from mean-centred yi (metafor >= 3.5-7, "for stability"), and
#    rma.mv() with one random effect per study (the same model, no centring), with two optimizers that
#    must agree; pfps-meta follows the model as written (see docs/conventions.md);
#  - anova(full, reduced) of REML fits with different fixed effects (metafor warns and returns the LRT)
#    and the same with refit = TRUE (both refitted by ML);
#  - user weights at three scales (1, 1e-200, 1e200 times year - 1930): relative weights, one answer.
suppressPackageStartupMessages({ library(metafor); library(jsonlite) })
tight <- list(threshold = 1e-12, tol = 1e-13, maxiter = 10000, tau2.max = 1e7)
# rma.mv: the REML surface is flat near its maximum here; nlminb stops about 1e-6 (relative) short in tau2,
# (nlm for ML too); optim's BFGS and bobyqa at tight settings agree to about 1e-8
mv_bfgs <- list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-14, maxit = 10000)
mv_bobyqa <- list(optimizer = "bobyqa", rhoend = 1e-12)
num <- function(x) as.numeric(x)
rel <- function(a, b) max(abs(a - b) / pmax(abs(b), 1e-300))

bcg <- escalc("RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
no_intercept <- list()
for (method in c("REML", "ML")) {
  uni <- rma(yi, vi, mods = ~ 0 + ablat, data = bcg, method = method, control = tight)
  shifted <- rma(yi + 1, vi, mods = ~ 0 + ablat, data = bcg, method = method, control = tight)
  mv1 <- rma.mv(yi, vi, mods = ~ 0 + ablat, random = ~ 1 | trial, data = bcg, method = method, control = mv_bfgs)
  mv2 <- rma.mv(yi, vi, mods = ~ 0 + ablat, random = ~ 1 | trial, data = bcg, method = method, control = mv_bobyqa)
  agree <- max(rel(mv1$sigma2, mv2$sigma2), rel(mv1$beta, mv2$beta), rel(c(logLik(mv1)), c(logLik(mv2))))
  cat(sprintf("%s: rma.mv BFGS vs bobyqa, max relative difference %.2e\n", method, agree))
  stopifnot(agree < 1e-7)
  no_intercept[[method]] <- list(
    rma_uni = list(tau2 = num(uni$tau2), qe = num(uni$QE), beta = num(uni$beta), se = num(uni$se),
                   loglik = num(logLik(uni)), tau2_yi_plus_1 = num(shifted$tau2), qe_yi_plus_1 = num(shifted$QE)),
    rma_mv = list(tau2 = num(mv1$sigma2), qe = num(mv1$QE), qe_p = num(mv1$QEp), beta = num(mv1$beta),
                  se = num(mv1$se), zval = num(mv1$zval), pval = num(mv1$pval), ci_low = num(mv1$ci.lb),
                  ci_high = num(mv1$ci.ub), loglik = num(logLik(mv1)), optimizers_max_rel_diff = agree))
}

full <- rma(yi, vi, mods = ~ ablat, data = bcg, method = "REML", control = tight)
reduced <- rma(yi, vi, data = bcg, method = "REML", control = tight)
warned <- NULL
lrt <- withCallingHandlers(anova(full, reduced),
                           warning = function(w) { warned <<- conditionMessage(w); invokeRestart("muffleWarning") })
lrt_refit <- anova(full, reduced, refit = TRUE)
lrt_out <- list(lrt = num(lrt$LRT), p = num(lrt$pval), df = num(lrt$parms.f - lrt$parms.r), warning = warned,
                ll_full = num(logLik(full)), ll_reduced = num(logLik(reduced)),
                refit_lrt = num(lrt_refit$LRT), refit_p = num(lrt_refit$pval))

weights <- list()
for (scale in c(1, 1e-200, 1e200)) {
  w <- (dat.bcg$year - 1930) * scale
  res <- rma(yi, vi, weights = w, data = bcg, method = "REML", control = tight)
  weights[[length(weights) + 1]] <- list(scale = scale, estimate = num(res$beta), se = num(res$se),
                                         ci_low = num(res$ci.lb), ci_high = num(res$ci.ub))
}

out <- list(metafor_version = as.character(packageVersion("metafor")), yi = num(bcg$yi), vi = num(bcg$vi),
            ablat = num(bcg$ablat), year = num(bcg$year), no_intercept = no_intercept, lrt_reml = lrt_out,
            weights = weights)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/fixtures/models_inputs.json")
cat("wrote tests/fixtures/models_inputs.json\n")
