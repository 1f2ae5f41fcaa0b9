# Reference values for pfps_meta.models.network (contrast-based network meta-analysis fitted with
# metafor's rma.mv), written to tests/fixtures/network/*.json, and data/examples/senn2013.csv
# exported from metadat.
#
# Run from the repository root:  Rscript validation/make_network_fixtures.R
#
# The model is the one in metafor's ?dat.senn2013 worked example: each study's contrasts against its
# own baseline arm, their exact covariance (contrasts sharing an arm covary by that arm's sd^2/n),
# a design matrix from contrmat(), and rma.mv(yi, V, mods = ~ <treatments> - 1,
# random = ~ comp | study, rho = 1/2). metafor 3.8-1 at tight control: nlminb with rel.tol 1e-12,
# checked against optim(BFGS) with reltol 1e-14 (the largest disagreement is printed at the end).
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
stopifnot(as.character(packageVersion("metafor")) == "3.8.1")

out_dir <- "tests/fixtures/network"
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
ctrl <- list(rel.tol = 1e-12, iter.max = 10000, eval.max = 10000)
ctrl_bfgs <- list(optimizer = "optim", optmethod = "BFGS", reltol = 1e-14, maxit = 100000)
worst <- 0

fit_mv <- function(yi, V, X, study, comp, method) {
  # rma.mv on a contrast design X (no intercept); tau^2 by `method`, rho fixed at 1/2
  d <- data.frame(yi = yi, study = study, comp = comp)
  if (method == "FE")
    return(rma.mv(yi, V, mods = X, intercept = FALSE, data = d, method = "FE"))
  one <- function(control) try(rma.mv(yi, V, mods = X, intercept = FALSE, data = d, random = ~ comp | study,
                                       rho = 1/2, method = method, control = control), silent = TRUE)
  a <- one(ctrl)
  if (inherits(a, "try-error")) a <- one(modifyList(ctrl, list(rel.tol = 1e-10)))
  b <- one(ctrl_bfgs)
  if (inherits(a, "try-error")) { message("  nlminb failed (", method, "): BFGS only"); return(b) }
  dis <- max(abs(c(a$beta) - c(b$beta)) / pmax(abs(c(a$beta)), 1e-8), abs(a$tau2 - b$tau2) / max(a$tau2, 1e-4))
  worst <<- max(worst, dis)
  if (c(logLik(b)) > c(logLik(a)) + 1e-10) b else a
}

summarise <- function(f) {
  out <- list(beta = setNames(as.list(c(f$beta)), rownames(f$beta)), se = setNames(as.list(f$se), rownames(f$beta)),
              vb = unname(f$vb), QE = f$QE, QEdf = f$k - f$p, tau2 = f$tau2, method = f$method,
              logLik = c(logLik(f)))
  out
}

# contrasts of every study against its first arm, with the exact covariance (MD)
arm_contrasts <- function(arms) {
  rows <- list(); blocks <- list()
  for (s in unique(arms$study)) {
    a <- arms[arms$study == s, ]
    u <- a$sd^2 / a$n
    rows[[s]] <- data.frame(study = s, treat1 = a$treatment[-1], treat2 = a$treatment[1],
                            yi = a$mean[-1] - a$mean[1], vi = u[-1] + u[1])
    m <- nrow(a) - 1
    B <- matrix(u[1], m, m); diag(B) <- u[-1] + u[1]
    blocks[[s]] <- B
  }
  list(table = do.call(rbind, rows), blocks = blocks)
}

design_matrix <- function(t1, t2, levels, ref) {
  X <- matrix(0, length(t1), length(levels), dimnames = list(NULL, levels))
  for (i in seq_along(t1)) { X[i, t1[i]] <- X[i, t1[i]] + 1; X[i, t2[i]] <- X[i, t2[i]] - 1 }
  X[, setdiff(levels, ref), drop = FALSE]
}

write_case <- function(name, x) {
  x$metafor_version <- as.character(packageVersion("metafor"))
  write_json(x, file.path(out_dir, paste0(name, ".json")), digits = NA, auto_unbox = TRUE, pretty = FALSE)
}

# ------------------------------------------------------------------------------------------------
# 1. dat.senn2013 (Senn et al. 2013; Rücker & Schwarzer 2015): glucose-lowering agents, HbA1c
#    mean differences, 26 studies, 10 treatments, one three-arm study (Willms 1999)
library(metadat)
s <- dat.senn2013
arms <- data.frame(study = s$study, treatment = s$treatment, comment = s$comment, n = s$ni,
                   mean = s$mi, sd = s$sdi, stringsAsFactors = FALSE)
write.csv(arms, "data/examples/senn2013.csv", row.names = FALSE)

# the ?dat.senn2013 example, literally: to.wide against placebo, escalc MD, V by bldiag, contrmat
dat <- dat.senn2013[c(1, 4:2, 5:6)]
dat <- to.wide(dat, study = "study", grp = "treatment", ref = "placebo", grpvars = 4:6)
dat <- escalc(measure = "MD", m1i = mi.1, sd1i = sdi.1, n1i = ni.1, m2i = mi.2, sd2i = sdi.2, n2i = ni.2, data = dat)
calc.v <- function(x) { v <- matrix(x$sdi.2[1]^2 / x$ni.2[1], nrow = nrow(x), ncol = nrow(x)); diag(v) <- x$vi; v }
V <- bldiag(lapply(split(dat, dat$study), calc.v))
dat <- contrmat(dat, grp1 = "treatment.1", grp2 = "treatment.2")
trts <- c("acarbose", "benfluorex", "metformin", "miglitol", "pioglitazone", "rosiglitazone",
          "sitagliptin", "sulfonylurea", "vildagliptin")
ex <- rma.mv(yi, V, mods = ~ acarbose + benfluorex + metformin + miglitol + pioglitazone +
               rosiglitazone + sitagliptin + sulfonylurea + vildagliptin - 1,
             random = ~ comp | study, rho = 1/2, data = dat, control = ctrl)
ex_bfgs <- update(ex, control = ctrl_bfgs)
worst <- max(worst, max(abs(c(ex$beta) - c(ex_bfgs$beta)) / abs(c(ex$beta))), abs(ex$tau2 - ex_bfgs$tau2) / ex$tau2)
ex_fe <- rma.mv(yi, V, mods = ~ acarbose + benfluorex + metformin + miglitol + pioglitazone +
                  rosiglitazone + sitagliptin + sulfonylurea + vildagliptin - 1, data = dat, method = "FE")
ex_ml <- rma.mv(yi, V, mods = ~ acarbose + benfluorex + metformin + miglitol + pioglitazone +
                  rosiglitazone + sitagliptin + sulfonylurea + vildagliptin - 1,
                random = ~ comp | study, rho = 1/2, data = dat, method = "ML", control = ctrl)
# P-scores as in the example (normal cdf of every pairwise z, averaged) for the REML fit; they rank
# lower HbA1c differences first (small values good)
contr <- data.frame(t(combn(c(names(coef(ex)), "placebo"), 2)))
contr <- contrmat(contr, "X1", "X2", last = "placebo", append = FALSE)
b <- c(coef(ex), 0); vb <- bldiag(vcov(ex), 0)
pvals <- apply(contr, 1, function(x) pnorm((x %*% b) / sqrt(t(x) %*% vb %*% x)))
tab <- vec2mat(pvals, corr = FALSE)
tab[upper.tri(tab)] <- t((1 - tab)[upper.tri(tab)])
rownames(tab) <- colnames(tab) <- colnames(contr)
pscore <- apply(tab, 1, mean, na.rm = TRUE)
write_case("senn2013", list(
  call = "?dat.senn2013: rma.mv(yi, V, mods = ~ <9 treatments> - 1, random = ~ comp | study, rho = 1/2)",
  reference = "placebo", treatments = trts,
  reml = summarise(ex), ml = summarise(ex_ml), fe = summarise(ex_fe),
  pscore_reml_metafor_example = as.list(pscore)))

# ------------------------------------------------------------------------------------------------
# 2. A synthetic network shaped like the patellofemoral-pain question (NOT real trial data): pain on
#    a 0-10 scale after hip + knee, hip alone, knee alone, or no training; two three-arm trials.
set.seed(20240517)
designs <- list(c("none", "knee", "hip+knee"), c("knee", "hip+knee"), c("knee", "hip+knee"),
                c("none", "knee", "hip"), c("none", "knee"), c("none", "hip"), c("none", "hip+knee"),
                c("hip", "hip+knee"), c("none", "knee"), c("knee", "hip+knee"), c("none", "knee"))
truth <- c("none" = 5.2, "knee" = 3.9, "hip" = 4.0, "hip+knee" = 3.0)
rows <- list()
for (i in seq_along(designs)) {
  base <- rnorm(1, 0, 0.6)
  for (t in designs[[i]]) {
    n <- sample(14:40, 1)
    rows[[length(rows) + 1]] <- data.frame(study = sprintf("Trial %02d", i), treatment = t, n = n,
      mean = round(truth[[t]] + base + rnorm(1, 0, 0.45), 1), sd = round(runif(1, 1.4, 2.6), 1))
  }
}
pfp <- do.call(rbind, rows)
rownames(pfp) <- NULL
cc <- arm_contrasts(pfp)
tab <- cc$table
Vp <- bldiag(cc$blocks)
levs <- c("none", "knee", "hip", "hip+knee")
Xp <- design_matrix(tab$treat1, tab$treat2, levs, "none")
comp <- paste(tab$treat1, tab$treat2)
pfp_fits <- lapply(c(REML = "REML", ML = "ML", FE = "FE"), function(m) summarise(fit_mv(tab$yi, Vp, Xp, tab$study, comp, m)))
# the additive component model (Rücker et al. 2020): hip+knee = hip + knee, none inactive
Cmat <- rbind("none" = c(hip = 0, knee = 0), "knee" = c(0, 1), "hip" = c(1, 0), "hip+knee" = c(1, 1))
colnames(Cmat) <- c("hip", "knee")
Xc <- (design_matrix(tab$treat1, tab$treat2, levs, "__none__"))
Xc <- cbind(hip = 0, knee = 0)[rep(1, nrow(tab)), , drop = FALSE]
for (i in seq_len(nrow(tab))) Xc[i, ] <- Cmat[tab$treat1[i], ] - Cmat[tab$treat2[i], ]
add_fits <- lapply(c(REML = "REML", ML = "ML", FE = "FE"), function(m) summarise(fit_mv(tab$yi, Vp, Xc, tab$study, comp, m)))
# a pairwise subset (knee vs none, two-arm trials only): the network model is then rma.uni, so the
# t-based and Hartung-Knapp intervals can be checked against rma.uni(test = "t" / "knha")
pw <- tab[tab$treat1 == "knee" & tab$treat2 == "none" & !(tab$study %in% tab$study[duplicated(tab$study)]), ]
u_reml <- rma(pw$yi, pw$vi, method = "REML", control = list(threshold = 1e-12, maxiter = 10000))
u_knha <- rma(pw$yi, pw$vi, method = "REML", test = "knha", control = list(threshold = 1e-12, maxiter = 10000))
u_t <- rma(pw$yi, pw$vi, method = "REML", test = "t", control = list(threshold = 1e-12, maxiter = 10000))
u_dl <- rma(pw$yi, pw$vi, method = "DL")
pi_of <- function(u) { p <- predict(u); c(p$pi.lb, p$pi.ub) }
pw_ref <- list(studies = pw$study, reml = list(tau2 = u_reml$tau2, beta = c(u_reml$beta), se = u_reml$se,
                 ci = c(u_reml$ci.lb, u_reml$ci.ub), pi = pi_of(u_reml)),
               knha = list(beta = c(u_knha$beta), se = u_knha$se, ci = c(u_knha$ci.lb, u_knha$ci.ub),
                 df = u_knha$dfs, pi = pi_of(u_knha)),
               t = list(beta = c(u_t$beta), se = u_t$se, ci = c(u_t$ci.lb, u_t$ci.ub), pi = pi_of(u_t)),
               dl = list(tau2 = u_dl$tau2, beta = c(u_dl$beta), se = u_dl$se, QE = u_dl$QE))
write_case("pfp_synthetic", list(
  note = "synthetic data shaped like the patellofemoral pain network; not from any trial",
  arms = pfp, contrasts = tab, reference = "none", treatments = levs[-1],
  network = pfp_fits, components = list(matrix = Cmat, names = colnames(Cmat), fits = add_fits),
  pairwise_knee_none = pw_ref))
write.csv(pfp, file.path(out_dir, "pfp_synthetic_arms.csv"), row.names = FALSE)

cat("largest relative disagreement between optimizers:", signif(worst, 3), "\n")
print(round(c(ex$tau2, coef(ex)[3], ex$se[3], ex_fe$QE), 6))
