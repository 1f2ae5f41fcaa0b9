# Writes tests/fixtures/metafor_parity.json: what issue 11 (metafor parity, next tier) is checked against.
# Run from the repository root:   Rscript validation/make_parity_fixtures.R
#  - escalc measures MC, SMCC, SMCR (pre-post, one group) and SMDH (two groups);
#  - fitstats() (logLik, deviance, AIC, BIC, AICc) and se.tau2 for intercept-only fits;
#  - confint(type = "PL") profile-likelihood CI for tau2 (ML, REML);
#  - blup(), rstandard(), rstudent(), fitted() of intercept-only fits;
#  - meta-regression: predict() at new moderator values (CI and PI), anova(btt=), anova(X=),
#    fitstats, the likelihood-ratio test anova(full, reduced) (ML), a categorical moderator;
#  - user weights (rma(weights =)), DFBETAS (influence()$dfbs) and an exact moderator permutation test.
suppressPackageStartupMessages({ library(metafor); library(jsonlite) })
tight <- list(threshold = 1e-10, tol = 1e-13, maxiter = 10000, tau2.max = 1e7)
num <- function(x) as.numeric(x)

pp <- data.frame(m1i = c(10, 12, 9, 14.2, 7.5), m2i = c(8, 9, 8.5, 11, 7.9), sd1i = c(3, 4, 2.5, 5.1, 2.2),
                 sd2i = c(2.5, 3.5, 2, 4.4, 2.4), ni = c(20, 15, 30, 42, 11), ri = c(.5, .6, .4, .71, .33))
measures <- list()
for (m in c("MC", "SMCC", "SMCR")) {
  e <- escalc(m, m1i = m1i, m2i = m2i, sd1i = sd1i, sd2i = sd2i, ni = ni, ri = ri, data = pp)
  measures[[m]] <- list(yi = num(e$yi), vi = num(e$vi))
}
n <- dat.normand1999
e <- escalc("SMDH", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = n)
measures[["SMDH"]] <- list(yi = num(e$yi), vi = num(e$vi))

bcg <- escalc("RR", ai = tpos, bi = tneg, ci = cpos, di = cneg, data = dat.bcg)
nmd <- escalc("MD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = n)
sets <- list(bcg_logRR = bcg, normand1999_MD = nmd)
fits <- list()
for (name in names(sets)) for (method in c("REML", "ML", "DL", "FE")) for (test in c("z", "knha")) {
  d <- sets[[name]]
  res <- suppressWarnings(rma(yi, vi, data = d, method = method, test = test, control = tight))
  fs <- fitstats(res)
  out <- list(dataset = name, method = method, test = test, loglik = num(fs[1]), deviance = num(fs[2]),
              aic = num(fs[3]), bic = num(fs[4]), aicc = num(fs[5]))
  if (method %in% c("REML", "ML")) {
    out$se_tau2 <- num(res$se.tau2)
    pl <- suppressWarnings(confint(res, type = "PL", control = tight))
    out$tau2_pl_low <- num(pl$random["tau^2", "ci.lb"]); out$tau2_pl_high <- num(pl$random["tau^2", "ci.ub"])
  }
  if (method != "FE") {
    b <- blup(res)
    out$blup <- list(pred = num(b$pred), se = num(b$se), pi_low = num(b$pi.lb), pi_high = num(b$pi.ub))
  }
  rs <- rstandard(res)
  out$rstandard <- list(resid = num(rs$resid), se = num(rs$se), z = num(rs$z))
  out$fitted <- num(fitted(res))
  fits[[length(fits) + 1]] <- out
}

regs <- list()
for (method in c("REML", "ML", "DL")) for (test in c("z", "knha")) {
  res <- suppressWarnings(rma(yi, vi, mods = ~ ablat + year, data = bcg, method = method, test = test, control = tight))
  pr <- predict(res, newmods = cbind(c(10, 30, 50), c(1940, 1960, 1980)))
  a1 <- anova(res, btt = 2)
  L <- rbind(c(0, 1, 0), c(0, 1, -1), c(1, 30, 1960))
  a2 <- anova(res, X = L)
  fs <- fitstats(res)
  rs <- rstandard(res)
  regs[[length(regs) + 1]] <- list(method = method, test = test,
    rstandard = list(resid = num(rs$resid), se = num(rs$se), z = num(rs$z)),
    beta = num(res$beta), pred = num(pr$pred), pred_se = num(pr$se), ci_low = num(pr$ci.lb), ci_high = num(pr$ci.ub),
    pi_low = num(pr$pi.lb), pi_high = num(pr$pi.ub),
    btt_stat = num(a1$QM), btt_p = num(a1$QMp), btt_df = num(c(a1$QMdf)),
    x_est = num(a2$Xb), x_se = num(a2$se), x_stat = num(a2$zval), x_p = num(a2$pval), x_qm = num(a2$QM),
    x_qm_p = num(a2$QMp),
    loglik = num(fs[1]), deviance = num(fs[2]), aic = num(fs[3]), bic = num(fs[4]), aicc = num(fs[5]))
}
full <- rma(yi, vi, mods = ~ ablat + year, data = bcg, method = "ML", control = tight)
reduced <- rma(yi, vi, mods = ~ ablat, data = bcg, method = "ML", control = tight)
lrt <- anova(full, reduced)
lrt_out <- list(lrt = num(lrt$LRT), df = num(lrt$parms.f - lrt$parms.r), p = num(lrt$pval),
                ll_full = num(logLik(full)), ll_reduced = num(logLik(reduced)))
cat_fit <- rma(yi, vi, mods = ~ factor(alloc), data = bcg, method = "REML", control = tight)
categorical <- list(levels = sort(unique(dat.bcg$alloc)), beta = num(cat_fit$beta), se = num(cat_fit$se),
                    qm = num(cat_fit$QM), qm_p = num(cat_fit$QMp))

# user weights (rma(weights =)): tau2 is estimated as usual, the estimate uses the given weights
weighted <- list()
for (method in c("REML", "DL", "FE")) {
  w <- dat.bcg$year - 1930
  res <- rma(yi, vi, weights = w, data = bcg, method = method, control = tight)
  weighted[[length(weighted) + 1]] <- list(method = method, weights = w, estimate = num(res$beta), se = num(res$se),
                                           ci_low = num(res$ci.lb), ci_high = num(res$ci.ub), tau2 = num(res$tau2),
                                           p = num(res$pval))
}
# DFBETAS of a meta-regression
mreg <- rma(yi, vi, mods = ~ ablat, data = bcg, method = "REML", control = tight)
dfb <- influence(mreg)$dfbs
dfbetas <- list(intercept = num(dfb[[1]]), ablat = num(dfb[[2]]))
mreg_k <- rma(yi, vi, mods = ~ ablat, data = bcg, method = "REML", test = "knha", control = tight)
dfb_k <- influence(mreg_k)$dfbs
dfbetas_knha <- list(intercept = num(dfb_k[[1]]), ablat = num(dfb_k[[2]]))
# exact permutation test of a moderator (6 studies: all permutations)
small <- bcg[1:6, ]
ms <- rma(yi, vi, mods = ~ ablat, data = small, method = "REML", control = tight)
pt <- suppressMessages(permutest(ms, exact = TRUE, control = tight))
permutation <- list(yi = num(small$yi), vi = num(small$vi), x = num(small$ablat), p = num(pt$pval), qm_p = num(pt$QMp))

out <- list(metafor_version = as.character(packageVersion("metafor")), prepost = as.list(pp), measures = measures,
            fits = fits, regressions = regs, lrt = lrt_out, categorical = categorical, weighted = weighted,
            dfbetas = dfbetas, dfbetas_knha = dfbetas_knha, permutation = permutation)
writeLines(toJSON(out, digits = NA, auto_unbox = TRUE, pretty = TRUE), "tests/fixtures/metafor_parity.json")
cat("wrote tests/fixtures/metafor_parity.json\n")
