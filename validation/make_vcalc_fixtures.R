# Writes tests/fixtures/vcalc/*.json: metafor 3.8-1's vcalc() on its documented examples and on small
# synthetic designs, escalc() for multi-arm trials with the exact covariance of contrasts that share an
# arm, and the Gleser & Olkin (2009) multiple-treatment examples fitted with rma.mv. Run from the
# repository root:
#   Rscript validation/make_vcalc_fixtures.R
# Every V is written as its blocks, one per cluster in order of first appearance (row-major matrices).
suppressPackageStartupMessages({ library(metafor); library(jsonlite) })
out_dir <- file.path("tests", "fixtures", "vcalc")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

blocks_of <- function(V, cluster) {
  lapply(unique(cluster), function(u) { i <- which(cluster == u); unname(V[i, i, drop = FALSE]) })
}
write_case <- function(name, x) {
  x$metafor_version <- as.character(packageVersion("metafor"))
  write_json(x, file.path(out_dir, paste0(name, ".json")), digits = NA, auto_unbox = TRUE, pretty = FALSE)
}
# vcalc plus the clusters whose block metafor reports as not positive definite
run_vcalc <- function(expr) {
  flagged <- character(0)
  V <- withCallingHandlers(expr, warning = function(w) {
    m <- regmatches(conditionMessage(w), regexpr("in cluster [^ ]+\\.$", conditionMessage(w)))
    if (length(m)) flagged <<- c(flagged, sub("\\.$", "", sub("in cluster ", "", m)))
    invokeRestart("muffleWarning")
  })
  list(V = V, not_pd = flagged)
}

# ---------------------------------------------------------------- vcalc: the ?vcalc examples
a <- dat.assink2016
r <- run_vcalc(vcalc(vi, cluster = study, obs = esid, data = a, rho = 0.6))
write_case("assink2016_obs", list(call = "vcalc(vi, cluster=study, obs=esid, data=dat.assink2016, rho=0.6)",
  data = a[c("study", "esid", "deltype", "vi")], args = list(cluster = "study", obs = "esid", rho = 0.6),
  blocks = blocks_of(r$V, a$study), not_pd = r$not_pd))

r <- run_vcalc(vcalc(vi, cluster = study, type = deltype, obs = esid, data = a, rho = c(0.7, 0.5)))
write_case("assink2016_type_obs", list(call = "vcalc(vi, cluster=study, type=deltype, obs=esid, data=dat.assink2016, rho=c(0.7, 0.5))",
  data = a[c("study", "esid", "deltype", "vi")], args = list(cluster = "study", type = "deltype", obs = "esid", rho = c(0.7, 0.5)),
  blocks = blocks_of(r$V, a$study), not_pd = r$not_pd))

ik <- dat.ishak2007
ik <- reshape(ik, direction = "long", idvar = "study", v.names = c("yi", "vi"), varying = list(c(2, 4, 6, 8), c(3, 5, 7, 9)))
ik <- ik[order(ik$study, ik$time), ]
ik <- ik[!is.na(ik$yi), ]
rownames(ik) <- NULL
r <- run_vcalc(vcalc(vi, cluster = study, time1 = time, phi = 0.97, data = ik))
write_case("ishak2007_ar1", list(call = "vcalc(vi, cluster=study, time1=time, phi=0.97, data=<dat.ishak2007 long form>)",
  data = ik[c("study", "time", "yi", "vi")], args = list(cluster = "study", time = "time", phi = 0.97),
  blocks = blocks_of(r$V, ik$study), not_pd = r$not_pd))

ka <- dat.kalaian1996
r <- run_vcalc(vcalc(vi, cluster = study, type = outcome, data = ka, rho = 0.66))
write_case("kalaian1996_type", list(call = "vcalc(vi, cluster=study, type=outcome, data=dat.kalaian1996, rho=0.66)",
  data = ka[c("study", "outcome", "vi")], args = list(cluster = "study", type = "outcome", rho = 0.66),
  blocks = blocks_of(r$V, ka$study), not_pd = r$not_pd))

kn <- dat.knapp2017
kn$task.diff <- unlist(lapply(split(kn, kn$study), function(x) {
  task.int <- as.integer(factor(x$task))
  diff.int <- as.integer(factor(x$difficulty))
  diff.int[is.na(diff.int)] <- 1
  paste0(task.int, ".", diff.int)
}))
R <- matrix(0.4, nrow = 8, ncol = 8)
R[5:8, 1:4] <- R[1:4, 5:8] <- 0.28
diag(R[1:4, 5:8]) <- 0.7
diag(R[5:8, 1:4]) <- 0.7
diag(R) <- 1
rownames(R) <- colnames(R) <- paste0(rep(1:2, each = 4), ".", 1:4)
r <- run_vcalc(vcalc(vi, cluster = study, grp1 = group1, grp2 = group2, w1 = n_sz, w2 = n_hc, obs = task.diff, rho = R, data = kn))
kdat <- kn[c("study", "group1", "group2", "n_sz", "n_hc", "task.diff", "vi")]
names(kdat)[names(kdat) == "task.diff"] <- "task_diff"
write_case("knapp2017_grp_obs_matrix", list(
  call = "vcalc(vi, cluster=study, grp1=group1, grp2=group2, w1=n_sz, w2=n_hc, obs=task.diff, rho=R, data=dat.knapp2017)",
  data = kdat, rho_matrix = list(labels = rownames(R), values = unname(R)),
  args = list(cluster = "study", grp1 = "group1", grp2 = "group2", w1 = "n_sz", w2 = "n_hc", obs = "task_diff"),
  blocks = blocks_of(r$V, kn$study), not_pd = r$not_pd))

r <- run_vcalc(vcalc(vi, cluster = study, grp1 = group1, grp2 = group2, w1 = n_sz, w2 = n_hc, data = kn))
write_case("knapp2017_grp", list(call = "vcalc(vi, cluster=study, grp1=group1, grp2=group2, w1=n_sz, w2=n_hc, data=dat.knapp2017)",
  data = kdat, args = list(cluster = "study", grp1 = "group1", grp2 = "group2", w1 = "n_sz", w2 = "n_hc"),
  blocks = blocks_of(r$V, kn$study), not_pd = r$not_pd))

# ---------------------------------------------------------------- vcalc: synthetic designs
set.seed(20240501)
# two constructs measured at uneven times in the same sample, with a subgroup split in study 3:
# correlation rho * phi^|t_i - t_j| (constructs differ) or phi^|t_i - t_j| (same construct)
syn <- data.frame(study = rep(c("s1", "s2", "s3"), times = c(6, 4, 8)),
                  sub = c(rep("a", 6), rep("a", 4), rep(c("m", "f"), each = 4)),
                  outcome = c(rep(c("pain", "function"), each = 3), rep(c("pain", "function"), each = 2),
                              rep(rep(c("pain", "function"), each = 2), 2)),
                  time = c(0, 1.5, 4, 0, 1.5, 4, 1, 3, 1, 3, rep(c(0, 2), 4)))
syn$vi <- round(runif(nrow(syn), 0.02, 0.2), 4)
r <- run_vcalc(vcalc(vi, cluster = study, type = outcome, time1 = time, phi = 0.8, rho = 0.5, data = syn))
write_case("synthetic_type_time", list(call = "vcalc(vi, cluster=study, type=outcome, time1=time, phi=0.8, rho=0.5)",
  data = syn, args = list(cluster = "study", type = "outcome", time = "time", phi = 0.8, rho = 0.5),
  blocks = blocks_of(r$V, syn$study), not_pd = r$not_pd))

r <- run_vcalc(vcalc(vi, cluster = study, subgroup = sub, type = outcome, time1 = time, phi = 0.8, rho = 0.5, data = syn))
write_case("synthetic_subgroup", list(call = "vcalc(vi, cluster=study, subgroup=sub, type=outcome, time1=time, phi=0.8, rho=0.5)",
  data = syn, args = list(cluster = "study", subgroup = "sub", type = "outcome", time = "time", phi = 0.8, rho = 0.5),
  blocks = blocks_of(r$V, syn$study), not_pd = r$not_pd))

# within-subjects contrasts (?vcalc: grp1 = grp2, time2 the reference occasion) and a mixed design
ws <- data.frame(study = c(1, 1, 2, 2, 2), g1 = c("A", "A", "T", "T", "C"), g2 = c("A", "A", "C", "C", "C"),
                 t1 = c(2, 3, 1, 2, 2), t2 = c(1, 1, 1, 2, 1), n1 = c(30, 30, 25, 25, 27), n2 = c(30, 30, 27, 27, 27),
                 vi = c(0.05, 0.06, 0.08, 0.09, 0.04))
r <- run_vcalc(vcalc(vi, cluster = study, grp1 = g1, grp2 = g2, time1 = t1, time2 = t2, w1 = n1, w2 = n2, phi = 0.6, data = ws))
write_case("synthetic_within_subjects", list(call = "vcalc(vi, cluster=study, grp1=g1, grp2=g2, time1=t1, time2=t2, w1=n1, w2=n2, phi=0.6)",
  data = ws, args = list(cluster = "study", grp1 = "g1", grp2 = "g2", time = "t1", time2 = "t2", w1 = "n1", w2 = "n2", phi = 0.6),
  blocks = blocks_of(r$V, ws$study), not_pd = r$not_pd))

# an implausible correlation matrix: metafor warns that study "b" is not positive definite
np <- data.frame(study = c("a", "a", "b", "b", "b"), scale = c("x", "y", "x", "y", "z"), vi = c(0.1, 0.2, 0.1, 0.1, 0.1))
Rn <- matrix(c(1, 0.9, 0.9, 0.9, 1, -0.9, 0.9, -0.9, 1), 3, 3, dimnames = list(c("x", "y", "z"), c("x", "y", "z")))
r <- run_vcalc(vcalc(vi, cluster = study, obs = scale, rho = Rn, data = np))
write_case("synthetic_not_pd", list(call = "vcalc(vi, cluster=study, obs=scale, rho=Rn)", data = np,
  rho_matrix = list(labels = rownames(Rn), values = unname(Rn)), args = list(cluster = "study", obs = "scale"),
  blocks = blocks_of(r$V, np$study), not_pd = r$not_pd))

# ---------------------------------------------------------------- multi-arm trials from arm data
# one 3-arm trial (two treatments, shared control), a 2-arm trial, a 4-arm trial with a zero-event arm
arms <- data.frame(study = c("T3", "T3", "T3", "T2", "T2", "T4", "T4", "T4", "T4"),
                   arm = c("ctrl", "hip", "knee", "ctrl", "hip", "ctrl", "a", "b", "c"),
                   n = c(40, 38, 41, 25, 27, 60, 55, 58, 61),
                   mean = c(5.1, 3.2, 4.0, 6.0, 4.4, 4.8, 3.9, 4.1, 2.7),
                   sd = c(2.0, 1.7, 2.3, 2.5, 2.1, 1.9, 2.2, 1.6, 2.0),
                   events = c(12, 5, 9, 10, 4, 0, 3, 6, 2))
ctrl <- arms[arms$arm == "ctrl", ]
con <- merge(arms[arms$arm != "ctrl", ], ctrl, by = "study", suffixes = c("_t", "_c"), sort = FALSE)
con <- con[order(match(con$study, unique(arms$study)), con$arm_t), ]
rownames(con) <- NULL
# zero-cell policy written for the network case: when any arm of a study has a zero cell, 0.5 is added
# to both cells of every arm of that study (for a two-arm study this is escalc's default add = 1/2).
zc <- tapply(arms$events == 0 | arms$events == arms$n, arms$study, any)
adj <- function(x, n, study) { z <- zc[as.character(study)]; list(x = x + 0.5 * z, n = n + 1 * z) }
et <- adj(con$events_t, con$n_t, con$study); ec <- adj(con$events_c, con$n_c, con$study)

measures <- list()
for (m in c("MD", "SMD")) {
  es <- escalc(m, m1i = mean_t, sd1i = sd_t, n1i = n_t, m2i = mean_c, sd2i = sd_c, n2i = n_c, data = con)
  vc <- vcalc(es$vi, cluster = con$study, grp1 = con$arm_t, grp2 = con$arm_c, w1 = con$n_t, w2 = con$n_c)
  measures[[m]] <- list(yi = as.numeric(es$yi), vi = as.numeric(es$vi), vcalc_blocks = blocks_of(vc, con$study))
}
for (m in c("RR", "OR", "RD")) {
  es <- escalc(m, ai = et$x, n1i = et$n, ci = ec$x, n2i = ec$n, add = 0, to = "none")
  vc <- vcalc(es$vi, cluster = con$study, grp1 = con$arm_t, grp2 = con$arm_c, w1 = con$n_t, w2 = con$n_c)
  measures[[m]] <- list(yi = as.numeric(es$yi), vi = as.numeric(es$vi), vcalc_blocks = blocks_of(vc, con$study))
}
# the exact covariance of two contrasts against the same control, written out per measure
# (Gleser & Olkin 2009, multiple-treatment studies): Var of the shared arm's statistic
shared <- list(MD = con$sd_c^2 / con$n_c, RR = 1 / ec$x - 1 / ec$n, OR = 1 / ec$x + 1 / (ec$n - ec$x),
               RD = (ec$x / ec$n) * (1 - ec$x / ec$n) / ec$n)
exact_blocks <- function(vi, cov_fun) {
  lapply(unique(con$study), function(s) {
    i <- which(con$study == s)
    B <- outer(i, i, Vectorize(cov_fun))
    diag(B) <- vi[i]
    unname(B)
  })
}
for (m in names(shared)) {
  measures[[m]]$exact_blocks <- exact_blocks(measures[[m]]$vi, function(i, j) shared[[m]][i])
}
# SMD with each contrast's own pooled SD (escalc): 1/n_c + g_i g_j n_c / (2 N_i N_j), N = n_t + n_c
g <- measures$SMD$yi
measures$SMD$exact_blocks <- exact_blocks(measures$SMD$vi, function(i, j)
  1 / con$n_c[i] + g[i] * g[j] * con$n_c[i] / (2 * (con$n_t[i] + con$n_c[i]) * (con$n_t[j] + con$n_c[j])))
# MD with equal SDs in every arm: vcalc's weights-based correlation is then exact
eq <- con; eq$sd_t <- 2; eq$sd_c <- 2
es <- escalc("MD", m1i = mean_t, sd1i = sd_t, n1i = n_t, m2i = mean_c, sd2i = sd_c, n2i = n_c, data = eq)
vc <- vcalc(es$vi, cluster = eq$study, grp1 = eq$arm_t, grp2 = eq$arm_c, w1 = eq$n_t, w2 = eq$n_c)
measures$MD_equal_sd <- list(yi = as.numeric(es$yi), vi = as.numeric(es$vi), vcalc_blocks = blocks_of(vc, eq$study))
write_case("multiarm_contrasts", list(
  note = "contrasts of each arm against the study's 'ctrl' arm; binary zero cells: 0.5 added to every arm of the study",
  arms = arms, contrasts = con[c("study", "arm_t", "arm_c")], zero_cell_studies = names(zc)[zc], measures = measures))

# ---------------------------------------------------------------- Gleser & Olkin (2009) examples
# (metafor's tests/testthat/test_analysis_example_gleser2009.r; Handbook of Research Synthesis and
# Meta-Analysis, 2nd ed., ch. 19): binary multiple-treatment studies, the shared arm is ai/n1i
go <- data.frame(study = c(1, 1, 2, 3, 3, 3), trt = c(1, 2, 1, 1, 2, 3),
                 ai = c(40, 40, 10, 150, 150, 150), n1i = c(1000, 1000, 200, 2000, 2000, 2000),
                 ci = c(100, 150, 15, 40, 80, 50), n2i = c(4000, 4000, 400, 1000, 1000, 1000))
p <- go$ai / go$n1i
covs <- list(RD = p * (1 - p) / go$n1i, OR = 1 / (go$n1i * p * (1 - p)), RR = (1 - p) / (go$n1i * p))
binary <- list()
for (m in names(covs)) {
  es <- escalc(m, ai = ai, ci = ci, n1i = n1i, n2i = n2i, data = go)
  V <- bldiag(lapply(split(seq_len(nrow(go)), go$study), function(i) {
    B <- matrix(covs[[m]][i[1]], length(i), length(i)); diag(B) <- es$vi[i]; B }))
  res <- rma.mv(yi, V, mods = ~ 0 + factor(trt), data = es)
  binary[[m]] <- list(yi = as.numeric(es$yi), vi = as.numeric(es$vi), blocks = blocks_of(V, go$study),
                      coef = as.numeric(coef(res)), vcov = unname(vcov(res)), QE = res$QE)
}
binary$RD$published <- list(coef = c(0.0200, 0.0043, 0.0211), vcov_1e6 = c(24.612, 19.954, 13.323, 19.954, 28.538, 13.255, 13.323, 13.255, 69.806), QE = 7.1907)
binary$OR$published <- list(coef = c(0.5099, 0.0044, 0.4301), QE = 2.057)
go_smd <- data.frame(study = c(1, 1, 2, 3, 4, 4), trt = c(1, 2, 1, 1, 1, 2),
                     m1i = c(7.87, 4.35, 9.32, 8.08, 7.44, 5.34), m2i = c(-1.36, -1.36, 0.98, 1.17, 0.45, 0.45),
                     sdpi = c(4.2593, 4.2593, 2.8831, 3.1764, 2.9344, 2.9344),
                     n1i = c(25, 22, 38, 50, 30, 30), n2i = c(25, 25, 40, 50, 30, 30))
go_smd$Ni <- unlist(lapply(split(go_smd, go_smd$study), function(x) rep(sum(x$n1i) + x$n2i[1], nrow(x))))
go_smd$yi <- with(go_smd, (m1i - m2i) / sdpi)
go_smd$vi <- with(go_smd, 1 / n1i + 1 / n2i + yi^2 / (2 * Ni))
V <- bldiag(lapply(split(go_smd, go_smd$study), function(x) {
  B <- 1 / x$n2i[1] + outer(x$yi, x$yi) / (2 * x$Ni[1]); diag(B) <- x$vi; B }))
res <- rma.mv(yi, V, mods = ~ 0 + factor(trt), data = go_smd)
smd <- list(data = go_smd, yi = go_smd$yi, vi = go_smd$vi, blocks = blocks_of(V, go_smd$study),
            coef = as.numeric(coef(res)), vcov = unname(vcov(res)), QE = res$QE,
            published = list(coef = c(2.3743, 1.5702), vcov = c(0.02257, 0.01244, 0.01244, 0.03554), QE = 3.9447))
write_case("gleser_olkin2009", list(binary_data = go, binary = binary, smd = smd))
cat("wrote", length(list.files(out_dir)), "fixtures to", out_dir, "\n")
