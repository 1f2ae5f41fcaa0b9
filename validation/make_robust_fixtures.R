# Reference values for pfps_meta.models.robust.cluster_robust (tests/test_robust.py).
#
# metafor 3.8-1 robust(fit, cluster)            -> "CR1" (adjust = TRUE) and "CR0" (adjust = FALSE)
# clubSandwich 0.5.8 vcovCR(fit, cluster, "CR2") -> "CR2", with coef_test(test = "Satterthwaite"),
#   conf_int(test = "Satterthwaite") and Wald_test(test = c("HTZ", "chi-sq")).
#
# Each case exports what cluster_robust() takes: X, y, beta, the marginal covariance M (fit$M, dense;
# small here), the explicit weight matrix W when the fit used one, the robust cluster of every row,
# and the model's outermost grouping (the blocks of M). Fits run at tight control and are checked
# against a second optimizer (bobyqa; the maximum relative difference is stored as "optimizer_check").
#
# Run from the repository root:  Rscript validation/make_robust_fixtures.R

suppressPackageStartupMessages({
  library(metafor)
  library(clubSandwich)
  library(jsonlite)
})

stopifnot(as.character(packageVersion("metafor")) == "3.8.1" ||
            as.character(packageVersion("metafor")) == "3.8-1")
stopifnot(as.character(packageVersion("clubSandwich")) == "0.5.8")

out_dir <- file.path("tests", "fixtures", "robust")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

tight <- list(rel.tol = 1e-12, iter.max = 10000, eval.max = 10000)
tight_check <- list(optimizer = "bobyqa", rhoend = 1e-12, maxfun = 1e5)

fit_both <- function(call) {
  call <- substitute(call)
  ca <- call; ca$control <- tight
  cb <- call; cb$control <- tight_check
  # nlminb at rel.tol 1e-12 can report non-convergence where the optimum is flat; then 1e-10
  a <- tryCatch(eval(ca, parent.frame()), error = function(e) {
    ca$control <- modifyList(tight, list(rel.tol = 1e-10)); eval(ca, parent.frame())
  })
  b <- eval(cb, parent.frame())
  ra <- c(a$beta, a$sigma2, a$tau2, a$rho)
  rb <- c(b$beta, b$sigma2, b$tau2, b$rho)
  list(fit = a, check = max(abs(ra - rb) / pmax(abs(ra), 1e-8)))
}

export_case <- function(name, description, fitted, cluster, blocks, btt = NULL, level = 0.95,
                        weights_used = FALSE, r_call = "") {
  fit <- fitted$fit
  cluster <- as.character(cluster)
  btt_idx <- if (is.null(btt)) fit$btt else btt
  # metafor: CR1 and CR0 (t tests with m - p df; QM is F(q, m - p))
  stopifnot(abs(fit$level - (1 - level)) < 1e-12)  # robust() takes its CI level from the fit
  r1 <- robust(fit, cluster = cluster, adjust = TRUE)
  r0 <- robust(fit, cluster = cluster, adjust = FALSE)
  # btt of the omnibus test when it is not the fit's default: re-run anova on the robust object
  mf_block <- function(r) {
    if (!is.null(btt)) {
      a <- anova(r, btt = btt)
      qm <- a$QM; qmdf <- a$QMdf; qmp <- a$QMp
    } else {
      qm <- r$QM; qmdf <- r$QMdf; qmp <- r$QMp
    }
    list(estimate = c(r$beta), se = r$se, t = r$zval, df = r$ddf, p = r$pval,
         ci_low = r$ci.lb, ci_high = r$ci.ub, vcov = unname(r$vb), m = length(unique(cluster)),
         wald = list(btt = btt_idx, statistic = qm, df_num = qmdf[1], df_denom = qmdf[2], p = qmp))
  }
  # clubSandwich CR2 (working model = fitted M, clubSandwich's default target for rma.mv)
  vc <- vcovCR(fit, cluster = cluster, type = "CR2")
  ct <- coef_test(fit, vcov = vc, test = "Satterthwaite")
  ci <- conf_int(fit, vcov = vc, level = level, test = "Satterthwaite")
  wt_sel <- Wald_test(fit, constraints = constrain_zero(btt_idx), vcov = vc,
                      test = c("HTZ", "chi-sq"))
  wt_all <- Wald_test(fit, constraints = constrain_zero(seq_len(fit$p)), vcov = vc,
                      test = c("HTZ", "chi-sq"))
  wald_rows <- function(w, idx) {
    list(btt = idx,
         HTZ = as.list(w[w$test == "HTZ", c("Fstat", "delta", "df_num", "df_denom", "p_val")]),
         chisq = as.list(w[w$test == "chi-sq", c("Fstat", "df_num", "p_val")]))
  }
  cr2 <- list(estimate = ct$beta, se = ct$SE, t = ct$tstat, df = ct$df_Satt, p = ct$p_Satt,
              ci_low = ci$CI_L, ci_high = ci$CI_U, vcov = unname(as.matrix(vc)),
              m = length(unique(cluster)),
              wald = wald_rows(wt_sel, btt_idx), wald_all = wald_rows(wt_all, seq_len(fit$p)))
  case <- list(
    name = name, description = description, r_call = r_call,
    metafor_version = as.character(packageVersion("metafor")),
    clubSandwich_version = as.character(packageVersion("clubSandwich")),
    optimizer_check = fitted$check, level = level,
    names = rownames(fit$beta),
    X = unname(fit$X), y = c(fit$yi), beta = c(fit$beta),
    M = unname(as.matrix(fit$M)),
    W = if (weights_used) unname(as.matrix(fit$W)) else NULL,
    cluster = cluster, blocks = as.character(blocks),
    sigma2 = fit$sigma2, tau2 = fit$tau2, rho = fit$rho,
    CR1 = mf_block(r1), CR0 = mf_block(r0), CR2 = cr2)
  writeLines(toJSON(case, digits = NA, auto_unbox = TRUE, null = "null", matrix = "rowmajor",
                    pretty = FALSE),
             file.path(out_dir, paste0(name, ".json")))
  cat(sprintf("%-34s CR2 se %s df %s | CR1 se %s (opt check %.1e)\n", name,
              paste(signif(ct$SE, 7), collapse = " "), paste(signif(ct$df_Satt, 6), collapse = " "),
              paste(signif(r1$se, 7), collapse = " "), fitted$check))
}

# 1-2. Konstantopoulos (2011): three-level model, districts as robust clusters ----------------------
dat <- dat.konstantopoulos2011
f <- fit_both(rma.mv(yi, vi, random = ~ 1 | district/study, data = dat))
export_case("konstantopoulos2011_three_level", "rma.mv(yi, vi, random = ~ 1 | district/study); cluster district",
            f, dat$district, dat$district)
f <- fit_both(rma.mv(yi, vi, mods = ~ I(year - 1990), random = ~ 1 | district/study, data = dat))
export_case("konstantopoulos2011_year", "as above with mods = ~ I(year - 1990)", f, dat$district, dat$district)

# 3-4. Assink & Wibbelink (2016): V from vcalc (rho = 0.6), study/esid, cluster study ---------------
dat <- dat.assink2016
V <- vcalc(vi, cluster = study, obs = esid, data = dat, rho = 0.6)
f <- fit_both(rma.mv(yi, V, random = ~ 1 | study/esid, data = dat))
export_case("assink2016_vcalc", "V = vcalc(vi, cluster = study, obs = esid, rho = 0.6); rma.mv(yi, V, random = ~ 1 | study/esid); cluster study",
            f, dat$study, dat$study)
f <- fit_both(rma.mv(yi, V, mods = ~ deltype, random = ~ 1 | study/esid, data = dat))
export_case("assink2016_deltype", "as above with mods = ~ deltype (omnibus test of the two deltype contrasts)",
            f, dat$study, dat$study)

# 5. Berkey et al. (1998): multivariate, unstructured between-trial covariance -----------------------
dat <- dat.berkey1998
V <- bldiag(lapply(split(dat[, c("v1i", "v2i")], dat$trial), as.matrix))
f <- fit_both(rma.mv(yi, V, mods = ~ outcome - 1, random = ~ outcome | trial, struct = "UN", data = dat))
export_case("berkey1998_multivariate", "rma.mv(yi, V, mods = ~ outcome - 1, random = ~ outcome | trial, struct = 'UN'); cluster trial",
            f, dat$trial, dat$trial)

# 6-7. Robust clusters coarser than the model's blocks ---------------------------------------------
dat <- dat.konstantopoulos2011
region <- c(`11` = "A", `12` = "A", `18` = "B", `27` = "B", `56` = "C", `58` = "C", `71` = "D",
            `86` = "D", `91` = "E", `108` = "E", `644` = "F")[as.character(dat$district)]
f <- fit_both(rma.mv(yi, vi, random = ~ 1 | district/study, data = dat, level = 90))
export_case("konstantopoulos2011_region", "random = ~ 1 | district/study; robust cluster = pairs of districts (6 clusters)",
            f, region, dat$district, level = 0.90)
f <- fit_both(rma.mv(yi, vi, mods = ~ I(year - 1990), random = ~ 1 | study, data = dat))
export_case("konstantopoulos2011_study_by_district", "random = ~ 1 | study (M diagonal), mods = ~ I(year - 1990); cluster district",
            f, dat$district, dat$study)

# 8. Explicit weights (rma.mv(W = ...)): clubSandwich's non-inverse-variance path ------------------
dat <- dat.konstantopoulos2011
f <- fit_both(rma.mv(yi, vi, mods = ~ I(year - 1990), random = ~ 1 | district/study, W = diag(1 / dat$vi), data = dat))
export_case("konstantopoulos2011_weights", "random = ~ 1 | district/study, mods = ~ I(year - 1990), W = diag(1/vi); cluster district",
            f, dat$district, dat$district, weights_used = TRUE)

# clubSandwich refuses random effects that are not nested within the robust cluster
dat <- dat.konstantopoulos2011
f <- rma.mv(yi, vi, random = ~ 1 | district/study, data = dat, control = tight)
msg <- tryCatch({vcovCR(f, cluster = dat$study, type = "CR2"); "no error"}, error = function(e) conditionMessage(e))
cat("not nested:", msg, "\n")
