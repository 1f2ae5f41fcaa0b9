# Reference values for pfps_meta.models.multilevel (metafor's rma.mv), written to
# tests/fixtures/multilevel/*.json, and the example datasets data/examples/{konstantopoulos2011,
# assink2016,berkey1998,ishak2007}.csv exported from metadat.
#
# Run from the repository root:  Rscript validation/make_multilevel_fixtures.R
# metafor 3.8-1 at tight control: nlminb with rel.tol 1e-12, checked against optim(BFGS, reltol 1e-14);
# profile CIs with uniroot tol 1e-10 (confint's default tol is eps^0.25, about 1e-4).
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
stopifnot(as.character(packageVersion("metafor")) == "3.8.1")

out_dir <- "tests/fixtures/multilevel"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
ctrl <- list(rel.tol = 1e-12, iter.max = 10000, eval.max = 10000)
ctrl_bfgs <- list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-14, maxit = 100000)
worst <- 0

fit <- function(...) {
  # the optim(BFGS) fit is kept (its profile refits for confint are the most reliable); nlminb at
  # tight control is the check that the optimum is tight
  cl <- match.call()
  cl[[1]] <- quote(rma.mv)
  cl$control <- ctrl_bfgs
  b <- eval(cl, parent.frame())
  cl$control <- ctrl
  a <- try(eval(cl, parent.frame()), silent = TRUE)
  if (inherits(a, "try-error")) {
    cl$control$rel.tol <- 1e-10
    a <- try(eval(cl, parent.frame()), silent = TRUE)
  }
  if (!inherits(a, "try-error")) {
    d <- max(abs(c(a$beta) - c(b$beta)) / pmax(abs(c(a$beta)), 1e-8),
             abs(c(a$sigma2, a$tau2, a$rho) - c(b$sigma2, b$tau2, b$rho)) /
               pmax(abs(c(a$sigma2, a$tau2, a$rho)), 1e-4))
    worst <<- max(worst, d)
    if (d > 1e-6) message("  optimizers differ by ", signif(d, 3), "; ll nlminb - BFGS = ",
                          signif(c(logLik(a)) - c(logLik(b)), 3))
    keep <- if (c(logLik(a)) > c(logLik(b)) + 1e-9) a else b
    keep$optimizer_disagreement <- d
    return(keep)
  }
  message("  nlminb failed; BFGS kept")
  b$optimizer_disagreement <- NA
  b
}

blocks_of <- function(V, cluster) {
  lapply(split(seq_len(nrow(V)), cluster), function(i) unname(V[i, i, drop = FALSE]))
}

extract <- function(res, confint = FALSE, ranef = FALSE, i2 = FALSE, predict = NULL) {
  message("  case: ", deparse(res$call)[1], " ", res$method, " struct ", res$struct[1])
  o <- list(
    names = rownames(res$beta), beta = c(res$beta), se = res$se, zval = res$zval, pval = res$pval,
    ci_lb = res$ci.lb, ci_ub = res$ci.ub, vb = unname(res$vb), ddf = res$ddf,
    sigma2 = res$sigma2, s_nlevels = res$s.nlevels, s_names = res$s.names,
    tau2 = res$tau2, rho = res$rho, g_nlevels = res$g.nlevels, g_levels = if (is.null(res$g.levels.k)) NULL else as.vector(unclass(res$g.levels.k)),
    QE = res$QE, QEp = res$QEp, QM = res$QM, QMp = res$QMp, QMdf = res$QMdf,
    k = res$k, p = res$p, parms = res$parms, method = res$method, test = res$test,
    fit_stats = list(ML = res$fit.stats$ML, REML = res$fit.stats$REML),
    logLik = c(logLik(res)), deviance = deviance(res), AIC = AIC(res), BIC = BIC(res),
    AICc = fitstats(res)[5, 1],
    # relative difference between nlminb and optim(BFGS) estimates: how tightly metafor pins the optimum
    optimizer_disagreement = res$optimizer_disagreement)
  if (confint) {
    ci <- confint(res, control = list(tol = 1e-10))
    if (inherits(ci, "confint.rma")) ci <- list(ci)
    ci <- Filter(function(x) is.list(x) && !is.null(x$random), unclass(ci))
    o$confint <- lapply(ci, function(x) list(names = rownames(x$random), estimate = x$random[, 1],
                                            ci_lb = x$random[, 2], ci_ub = x$random[, 3],
                                            # ">"/"<": metafor's search hit the edge of its range
                                            # (its refit failed there), so the bound is only a limit
                                            lb_sign = x$lb.sign, ub_sign = x$ub.sign))
  }
  if (ranef) {
    r <- ranef(res)
    o$ranef <- lapply(r, function(x) list(labels = trimws(rownames(x)), pred = x[[1]], se = x$se,
                                         pi_lb = x$pi.lb, pi_ub = x$pi.ub))
    o$ranef_names <- names(r)
  }
  if (i2) {
    W <- diag(1 / res$vi)
    X <- model.matrix(res)
    P <- W - W %*% X %*% solve(t(X) %*% W %*% X) %*% t(X) %*% W
    typ <- (res$k - res$p) / sum(diag(P))
    o$i2 <- 100 * res$sigma2 / (sum(res$sigma2) + typ)
    o$i2_total <- 100 * sum(res$sigma2) / (sum(res$sigma2) + typ)
  }
  if (!is.null(predict)) {
    pr <- if (identical(predict, "intercept")) predict(res) else predict(res, newmods = predict)
    o$predict <- list(newmods = if (identical(predict, "intercept")) NULL else predict,
                      pred = pr$pred, se = pr$se, ci_lb = pr$ci.lb, ci_ub = pr$ci.ub,
                      pi_lb = pr$pi.lb, pi_ub = pr$pi.ub)
  }
  o
}

save <- function(x, name) {
  message("saved ", name)
  write_json(x, file.path(out_dir, paste0(name, ".json")), digits = NA, auto_unbox = TRUE,
             null = "null", na = "null", pretty = FALSE)
}

# ---------------------------------------------------------------- konstantopoulos2011
dat <- dat.konstantopoulos2011
write.csv(dat, "data/examples/konstantopoulos2011.csv", row.names = FALSE)
dat$year_c <- dat$year - mean(dat$year)
k <- list()
k$reml <- extract(fit(yi, vi, random = ~ 1 | district/study, data = dat),
                  confint = TRUE, ranef = TRUE, i2 = TRUE, predict = "intercept")
k$ml <- extract(fit(yi, vi, random = ~ 1 | district/study, data = dat, method = "ML"),
                confint = TRUE, ranef = TRUE, i2 = TRUE, predict = "intercept")
k$reml_t <- extract(fit(yi, vi, random = ~ 1 | district/study, data = dat, test = "t"),
                    ranef = TRUE, predict = "intercept")
k$reml_year_c <- extract(fit(yi, vi, mods = ~ year_c, random = ~ 1 | district/study, data = dat),
                         i2 = TRUE, predict = matrix(c(-5, 0, 5), ncol = 1))
k$ml_year_c <- extract(fit(yi, vi, mods = ~ year_c, random = ~ 1 | district/study, data = dat,
                           method = "ML"))
k$reml_year <- extract(fit(yi, vi, mods = ~ year, random = ~ 1 | district/study, data = dat),
                       predict = matrix(c(1970, 1985), ncol = 1))
k$reml_study <- extract(fit(yi, vi, random = ~ 1 | study, data = dat), confint = TRUE)
# metafor's own test: the multivariate parameterisation of the same three-level model
k$cs_study_in_district <- extract(fit(yi, vi, random = ~ factor(study) | district, struct = "CS",
                                      data = dat), confint = TRUE)
# metafor's test: a tau2 per district (struct DIAG over districts within studies) plus ~ 1 | district,
# the two kinds of random terms together; several tau2 sit at the boundary 0
k$district_plus_diag <- extract(fit(yi, vi, random = list(~ 1 | district, ~ factor(district) | study),
                                    struct = "DIAG", data = dat))
save(k, "konstantopoulos2011")

# ---------------------------------------------------------------- assink2016
dat <- dat.assink2016
write.csv(dat, "data/examples/assink2016.csv", row.names = FALSE)
V <- vcalc(vi, cluster = study, obs = esid, data = dat, rho = 0.6)
a <- list()
a$V_blocks <- blocks_of(V, dat$study)
a$V_labels <- names(split(seq_len(nrow(dat)), dat$study))
a$reml <- extract(fit(yi, V, random = ~ 1 | study/esid, data = dat), confint = TRUE, ranef = TRUE,
                  i2 = TRUE, predict = "intercept")
a$ml <- extract(fit(yi, V, random = ~ 1 | study/esid, data = dat, method = "ML"))
a$reml_deltype <- extract(fit(yi, V, mods = ~ deltype, random = ~ 1 | study/esid, data = dat,
                              test = "t"))
save(a, "assink2016")

# ---------------------------------------------------------------- berkey1998
dat <- dat.berkey1998
write.csv(dat, "data/examples/berkey1998.csv", row.names = FALSE)
V <- bldiag(lapply(split(dat[, c("v1i", "v2i")], dat$trial), as.matrix))
b <- list()
b$V_blocks <- blocks_of(V, dat$trial)
for (s in c("UN", "CS", "HCS", "DIAG", "ID")) {
  b[[paste0("reml_", s)]] <- extract(fit(yi, V, mods = ~ outcome - 1, random = ~ outcome | trial,
                                         struct = s, data = dat),
                                     confint = s %in% c("UN", "CS"), ranef = s == "UN")
}
b$ml_UN <- extract(fit(yi, V, mods = ~ outcome - 1, random = ~ outcome | trial, struct = "UN",
                       data = dat, method = "ML"))
b$ml_UN_year <- extract(fit(yi, V, mods = ~ 0 + outcome + outcome:I(year - 1983),
                            random = ~ outcome | trial, struct = "UN", data = dat, method = "ML"))
b$ml_CS <- extract(fit(yi, V, mods = ~ outcome - 1, random = ~ outcome | trial, struct = "CS",
                       data = dat, method = "ML"))
save(b, "berkey1998")

# ---------------------------------------------------------------- ishak2007
dat <- dat.ishak2007
write.csv(dat, "data/examples/ishak2007.csv", row.names = FALSE)
long <- reshape(dat, direction = "long", idvar = "study", v.names = c("yi", "vi"),
                varying = list(c(2, 4, 6, 8), c(3, 5, 7, 9)))
long <- long[order(long$study, long$time), ]
long <- long[!is.na(long$yi), ]
rownames(long) <- NULL
V <- vcalc(vi, cluster = study, time1 = time, phi = 0.97, data = long)
i <- list()
i$long <- list(study = as.character(long$study), time = long$time, yi = long$yi, vi = long$vi)
i$V_blocks <- blocks_of(V, long$study)
i$V_labels <- names(split(seq_len(nrow(long)), long$study))
i$reml_HAR <- extract(fit(yi, V, mods = ~ factor(time) - 1, random = ~ time | study, struct = "HAR",
                          data = long), confint = TRUE, ranef = TRUE)
i$reml_AR <- extract(fit(yi, V, mods = ~ factor(time) - 1, random = ~ time | study, struct = "AR",
                         data = long), confint = TRUE, predict = diag(4))
i$reml_HCS <- extract(fit(yi, V, mods = ~ factor(time) - 1, random = ~ factor(time) | study,
                          struct = "HCS", data = long))
i$reml_CAR <- extract(fit(yi, V, mods = ~ factor(time) - 1, random = ~ time | study, struct = "CAR",
                          data = long))
Vd <- diag(diag(V))
i$diag_DIAG <- extract(fit(yi, Vd, mods = ~ factor(time) - 1, random = ~ factor(time) | study,
                           struct = "DIAG", data = long))
i$diag_ID <- extract(fit(yi, Vd, mods = ~ factor(time) - 1, random = ~ factor(time) | study,
                         struct = "ID", data = long))
i$diag_study <- extract(fit(yi, Vd, mods = ~ factor(time) - 1, random = ~ 1 | study, data = long))
i$diag_HAR <- extract(fit(yi, Vd, mods = ~ factor(time) - 1, random = ~ time | study, struct = "HAR",
                          data = long))
save(i, "ishak2007")

message("largest optimizer disagreement (nlminb vs BFGS, relative): ", signif(worst, 3))
