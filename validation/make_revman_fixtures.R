# Writes tests/fixtures/revman/examples.rm5: a small RevMan 5 file of ours, in RevMan's XML layout
# (learned from meta's inst/extdata/Fleiss1993.rm5), holding public datasets from R package metadat and
# the totals that metafor 3.8-1 computes for them, stored as RevMan stores its own:
#   - ratio measures: EFFECT_SIZE, CI_START, CI_END on the ratio scale, LOG_* as base-10 logarithms;
#   - Z is |z|, P_Z its two-sided p; CHI2, DF, P_CHI2 the heterogeneity test; I2 (percent) from Q;
#     TAU2 the DerSimonian-Laird tau² of a random-effects outcome (0 for a fixed one, as RevMan writes);
#   - subgroup outcomes: each subgroup's own totals, the outcome's totals over all its studies, and the
#     test for subgroup differences in Q, P_Q, I2_Q.
# Comparisons and outcomes:
#   1 BCG vaccine vs no vaccine (dat.bcg): 1.1 RR, Mantel-Haenszel fixed (rma.mh); 1.2 OR, inverse
#     variance, random (rma DL), subgroups random vs non-random allocation; 1.3 Peto OR (rma.peto); 1.4 OR
#     and 1.5 RD, Mantel-Haenszel fixed (rma.mh); 1.6 RR, Mantel-Haenszel random as RevMan 5 fits it (below).
#   2 Specialist vs routine stroke care (dat.normand1999): 2.1 MD random (rma DL); 2.2 SMD random, RevMan 5's
#     Hedges' g (Deeks & Higgins 2010: J = 1 - 3/(4N - 9), var = N/(n1 n2) + g^2/(2(N - 3.94))) pooled by
#     rma DL; 2.3 MD with no totals stored (TOTALS="NO").
#   3 Passive smoking (dat.hackshaw1998): 3.1 generic inverse variance, log OR and SE = sqrt(vi), fixed
#     (rma method="FE"), at a 99% CI.
# Run from the repository root:  Rscript validation/make_revman_fixtures.R
suppressPackageStartupMessages({ library(metafor); library(metadat) })
ctl <- list(threshold = 1e-12, maxiter = 10000)
out_dir <- file.path("tests", "fixtures", "revman")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)

num <- function(x) ifelse(is.na(x), "", sprintf("%.17g", x))
esc <- function(s) { s <- gsub("&", "&amp;", s, fixed = TRUE); s <- gsub("<", "&lt;", s, fixed = TRUE)
                     gsub("\"", "&quot;", s, fixed = TRUE) }
attrs <- function(a) paste(sprintf('%s="%s"', names(a), vapply(a, function(v) if (is.character(v)) esc(v) else num(v), "")),
                           collapse = " ")
study_id <- function(name) paste0("STD-", gsub("[^A-Za-z0-9]", "_", name))

# ---------------------------------------------------------------- totals as RevMan stores them
ratio_fields <- function(est, lo, hi, ratio) {
  if (ratio) c(EFFECT_SIZE = exp(est), CI_START = exp(lo), CI_END = exp(hi), LOG_EFFECT_SIZE = est / log(10),
               LOG_CI_START = lo / log(10), LOG_CI_END = hi / log(10))
  else c(EFFECT_SIZE = est, CI_START = lo, CI_END = hi)
}
totals_of <- function(fit, ratio, random, k) {
  q <- fit$QE; df <- k - 1
  i2 <- if (q > 0) max(0, (q - df) / q) * 100 else 0
  c(ratio_fields(as.numeric(fit$beta)[1], fit$ci.lb, fit$ci.ub, ratio), Z = abs(fit$zval), P_Z = fit$pval, CHI2 = q, DF = df,
    P_CHI2 = fit$QEp, I2 = i2, TAU2 = if (random) fit$tau2 else 0, STUDIES = k, WEIGHT = 100)
}
subgroup_test <- function(est, se) {   # RevMan's test for subgroup differences: Q among subgroup totals
  fit <- rma(est, sei = se, method = "FE")
  c(Q = fit$QE, P_Q = fit$QEp, I2_Q = if (fit$QE > 0) max(0, (fit$QE - fit$k + 1) / fit$QE) * 100 else 0)
}

# ---------------------------------------------------------------- XML pieces
data_rows <- function(tag, d, extra) {
  vapply(seq_len(nrow(d)), function(i) {
    a <- c(list(STUDY_ID = study_id(d$study[i]), ORDER = i, ESTIMABLE = "YES"), as.list(extra[i, , drop = FALSE]))
    sprintf("<%s %s/>", tag, attrs(a))
  }, "")
}
outcome_xml <- function(kind, no, name, head, labels, body, subgroups = NULL) {
  c(sprintf('<%s_OUTCOME ID="CMP-%s" NO="%d" %s>', kind, no, as.integer(sub(".*\\.", "", no)), attrs(head)),
    sprintf("<NAME>%s</NAME>", esc(name)),
    sprintf("<GROUP_LABEL_1>%s</GROUP_LABEL_1>", esc(labels[1])), sprintf("<GROUP_LABEL_2>%s</GROUP_LABEL_2>", esc(labels[2])),
    "<GRAPH_LABEL_1>Favours experimental</GRAPH_LABEL_1>", "<GRAPH_LABEL_2>Favours control</GRAPH_LABEL_2>",
    body, sprintf("</%s_OUTCOME>", kind))
}
subgroup_xml <- function(kind, no, name, head, body) {
  c(sprintf('<%s_SUBGROUP ID="CMP-%s" NO="%d" %s>', kind, no, as.integer(sub(".*\\.", "", no)), attrs(head)),
    sprintf("<NAME>%s</NAME>", esc(name)), body, sprintf("</%s_SUBGROUP>", kind))
}
pct <- function(w) 100 * w / sum(w)

# ---------------------------------------------------------------- 1: BCG (dichotomous)
b <- dat.bcg
b$study <- paste(b$author, b$year)
b$n1 <- as.numeric(b$tpos + b$tneg); b$n2 <- as.numeric(b$cpos + b$cneg)
dich_extra <- function(d, es, weight, peto = NULL, ratio = TRUE) {
  se <- sqrt(es$vi); z <- qnorm(0.975)
  x <- data.frame(EVENTS_1 = d$tpos, TOTAL_1 = d$n1, EVENTS_2 = d$cpos, TOTAL_2 = d$n2)
  x <- cbind(x, t(vapply(seq_len(nrow(d)), function(i) ratio_fields(es$yi[i], es$yi[i] - z * se[i], es$yi[i] + z * se[i], ratio),
                         numeric(if (ratio) 6 else 3))))
  x$SE <- se; x$VAR <- es$vi; x$WEIGHT <- weight
  x$O_E <- if (is.null(peto)) 0 else peto$oe
  if (!is.null(peto)) x$VAR <- peto$v
  x
}
dich_head <- function(d, tot, method, measure, random, extra = list()) {
  c(as.list(tot),
    list(CI_STUDY = 95, CI_TOTAL = 95, EFFECT_MEASURE = measure, METHOD = method, RANDOM = if (random) "YES" else "NO",
         EVENTS_1 = sum(d$tpos), EVENTS_2 = sum(d$cpos), TOTAL_1 = sum(d$n1), TOTAL_2 = sum(d$n2), TOTALS = "YES",
         SWAP_EVENTS = "NO", ESTIMABLE = "YES", SCALE = 100), as.list(extra))
}

# 1.1 RR, Mantel-Haenszel fixed
mh <- rma.mh(ai = tpos, n1i = n1, ci = cpos, n2i = n2, data = b, measure = "RR")
es <- escalc("RR", ai = tpos, n1i = n1, ci = cpos, n2i = n2, data = b)
w_mh <- b$cpos * b$n1 / (b$n1 + b$n2)                         # MH weights of the risk ratio
o11 <- outcome_xml("DICH", "001.01", "Tuberculosis (risk ratio, M-H fixed)",
                   dich_head(b, totals_of(mh, TRUE, FALSE, nrow(b)), "MH", "RR", FALSE, list(SUBGROUPS = "NO")),
                   c("BCG vaccine", "No vaccine"), data_rows("DICH_DATA", b, dich_extra(b, es, pct(w_mh))))

# 1.2 OR, inverse variance, random (DL), two subgroups by allocation
es_or <- escalc("OR", ai = tpos, n1i = n1, ci = cpos, n2i = n2, data = b)
b$sub <- ifelse(b$alloc == "random", "Random allocation", "Alternate or systematic allocation")
groups <- c("Random allocation", "Alternate or systematic allocation")
dl_all <- rma(yi, vi, data = es_or, method = "DL", control = ctl)
sub_fits <- lapply(groups, function(g) rma(yi, vi, data = es_or[b$sub == g, ], method = "DL", control = ctl))
sg_test <- subgroup_test(vapply(sub_fits, function(f) f$beta[1], 0), vapply(sub_fits, function(f) f$se, 0))
sub_body <- unlist(lapply(seq_along(groups), function(j) {
  rows <- b$sub == groups[j]; d <- b[rows, ]; e <- es_or[rows, ]
  w <- 1 / (e$vi + sub_fits[[j]]$tau2)
  subgroup_xml("DICH", sprintf("001.02.%02d", j), groups[j],
               dich_head(d, totals_of(sub_fits[[j]], TRUE, TRUE, nrow(d)), "IV", "OR", TRUE),
               data_rows("DICH_DATA", d, dich_extra(d, e, pct(w))))
}))
o12 <- outcome_xml("DICH", "001.02", "Tuberculosis (odds ratio, IV random, by allocation)",
                   dich_head(b, totals_of(dl_all, TRUE, TRUE, nrow(b)), "IV", "OR", TRUE,
                             c(list(SUBGROUPS = "YES", SUBGROUP_TEST = "YES"), as.list(sg_test))),
                   c("BCG vaccine", "No vaccine"), sub_body)

# 1.3 Peto odds ratio, fixed
peto <- rma.peto(ai = tpos, n1i = n1, ci = cpos, n2i = n2, data = b)
N <- b$n1 + b$n2; m1 <- b$tpos + b$cpos
v_peto <- b$n1 * b$n2 * m1 * (N - m1) / (N^2 * (N - 1))          # hypergeometric variance of a
oe <- b$tpos - b$n1 * m1 / N
es_peto <- data.frame(yi = oe / v_peto, vi = 1 / v_peto)
o13 <- outcome_xml("DICH", "001.03", "Tuberculosis (Peto odds ratio)",
                   dich_head(b, totals_of(peto, TRUE, FALSE, nrow(b)), "PETO", "PETO_OR", FALSE, list(SUBGROUPS = "NO")),
                   c("BCG vaccine", "No vaccine"),
                   data_rows("DICH_DATA", b, dich_extra(b, es_peto, pct(v_peto), list(oe = oe, v = v_peto))))
# 1.4 OR and 1.5 RD, Mantel-Haenszel fixed
mh_or <- rma.mh(ai = tpos, n1i = n1, ci = cpos, n2i = n2, data = b, measure = "OR")
w_or <- (b$n1 - b$tpos) * b$cpos / (b$n1 + b$n2)                 # MH weights of the odds ratio
o14 <- outcome_xml("DICH", "001.04", "Tuberculosis (odds ratio, M-H fixed)",
                   dich_head(b, totals_of(mh_or, TRUE, FALSE, nrow(b)), "MH", "OR", FALSE, list(SUBGROUPS = "NO")),
                   c("BCG vaccine", "No vaccine"), data_rows("DICH_DATA", b, dich_extra(b, es_or, pct(w_or))))
mh_rd <- rma.mh(ai = tpos, n1i = n1, ci = cpos, n2i = n2, data = b, measure = "RD")
es_rd <- escalc("RD", ai = tpos, n1i = n1, ci = cpos, n2i = n2, data = b)
o15 <- outcome_xml("DICH", "001.05", "Tuberculosis (risk difference, M-H fixed)",
                   dich_head(b, totals_of(mh_rd, FALSE, FALSE, nrow(b)), "MH", "RD", FALSE, list(SUBGROUPS = "NO")),
                   c("BCG vaccine", "No vaccine"),
                   data_rows("DICH_DATA", b, dich_extra(b, es_rd, pct(b$n1 * b$n2 / (b$n1 + b$n2)), ratio = FALSE)))
# 1.6 RR, Mantel-Haenszel random: RevMan 5 takes the DerSimonian-Laird tau² from Q about the MH estimate
# (rma.mh's QE) with inverse-variance weights w = 1/vi (Deeks & Higgins 2010), then pools the study log RRs
# with weights 1/(vi + tau²): rma with that tau² fixed. Q, df and I² stay those of the MH fit.
w_iv <- 1 / es$vi
tau2_mh <- max(0, (mh$QE - (nrow(b) - 1)) / (sum(w_iv) - sum(w_iv^2) / sum(w_iv)))
mh_re <- rma(yi, vi, data = es, tau2 = tau2_mh, control = ctl)
mh_re_tot <- totals_of(mh_re, TRUE, TRUE, nrow(b))
mh_re_tot[c("CHI2", "P_CHI2", "I2")] <- totals_of(mh, TRUE, FALSE, nrow(b))[c("CHI2", "P_CHI2", "I2")]
o16 <- outcome_xml("DICH", "001.06", "Tuberculosis (risk ratio, M-H random)",
                   dich_head(b, mh_re_tot, "MH", "RR", TRUE, list(SUBGROUPS = "NO")),
                   c("BCG vaccine", "No vaccine"), data_rows("DICH_DATA", b, dich_extra(b, es, pct(1 / (es$vi + tau2_mh)))))
cmp1 <- c('<COMPARISON ID="CMP-001" NO="1">', "<NAME>BCG vaccine versus no vaccine</NAME>", o11, o12, o13, o14, o15,
          o16, "</COMPARISON>")

# ---------------------------------------------------------------- 2: normand1999 (continuous)
s <- dat.normand1999
s$study <- s$source
cont_extra <- function(d, yi, vi, weight) {
  z <- qnorm(0.975)
  data.frame(MEAN_1 = d$m1i, SD_1 = d$sd1i, TOTAL_1 = d$n1i, MEAN_2 = d$m2i, SD_2 = d$sd2i, TOTAL_2 = d$n2i,
             EFFECT_SIZE = yi, SE = sqrt(vi), CI_START = yi - z * sqrt(vi), CI_END = yi + z * sqrt(vi), WEIGHT = weight)
}
cont_head <- function(d, tot, measure, totals = "YES") {
  c(as.list(tot), list(CI_STUDY = 95, CI_TOTAL = 95, EFFECT_MEASURE = measure, METHOD = "IV", RANDOM = "YES",
                       TOTAL_1 = sum(d$n1i), TOTAL_2 = sum(d$n2i), TOTALS = totals, SUBGROUPS = "NO", UNITS = "days",
                       ESTIMABLE = "YES"))
}
md <- escalc("MD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = s)
md_fit <- rma(yi, vi, data = md, method = "DL", control = ctl)
o21 <- outcome_xml("CONT", "002.01", "Length of stay (days, MD, IV random)",
                   cont_head(s, totals_of(md_fit, FALSE, TRUE, nrow(s)), "MD"), c("Specialist care", "Routine care"),
                   data_rows("CONT_DATA", s, cont_extra(s, md$yi, md$vi, pct(1 / (md$vi + md_fit$tau2)))))
N <- s$n1i + s$n2i
sp <- sqrt(((s$n1i - 1) * s$sd1i^2 + (s$n2i - 1) * s$sd2i^2) / (N - 2))
g <- (1 - 3 / (4 * N - 9)) * (s$m1i - s$m2i) / sp
vg <- N / (s$n1i * s$n2i) + g^2 / (2 * (N - 3.94))
smd_fit <- rma(g, vg, method = "DL", control = ctl)
o22 <- outcome_xml("CONT", "002.02", "Length of stay (SMD, IV random)",
                   cont_head(s, totals_of(smd_fit, FALSE, TRUE, nrow(s)), "SMD"), c("Specialist care", "Routine care"),
                   data_rows("CONT_DATA", s, cont_extra(s, g, vg, pct(1 / (vg + smd_fit$tau2)))))
empty <- setNames(rep(NA_real_, 10), c("EFFECT_SIZE", "CI_START", "CI_END", "Z", "P_Z", "CHI2", "DF", "P_CHI2", "I2", "TAU2"))
o23 <- outcome_xml("CONT", "002.03", "Length of stay (days, MD, no totals)",
                   cont_head(s, c(empty, STUDIES = nrow(s)), "MD", totals = "NO"), c("Specialist care", "Routine care"),
                   data_rows("CONT_DATA", s, cont_extra(s, rep(NA, nrow(s)), rep(NA, nrow(s)), rep(NA, nrow(s)))))
cmp2 <- c('<COMPARISON ID="CMP-002" NO="2">', "<NAME>Specialist versus routine stroke care</NAME>", o21, o22, o23,
          "</COMPARISON>")

# ---------------------------------------------------------------- 3: hackshaw1998 (generic inverse variance)
h <- dat.hackshaw1998
h$study <- paste(h$author, h$year)
fe <- rma(yi, vi, data = h, method = "FE", level = 99)
z99 <- qnorm(0.995)
iv_extra <- data.frame(t(vapply(seq_len(nrow(h)), function(i) ratio_fields(h$yi[i], h$yi[i] - z99 * sqrt(h$vi[i]),
                                                                            h$yi[i] + z99 * sqrt(h$vi[i]), TRUE), numeric(6))))
iv_extra$SE <- sqrt(h$vi); iv_extra$WEIGHT <- pct(1 / h$vi)
iv_head <- c(as.list(totals_of(fe, TRUE, FALSE, nrow(h))),
             list(CI_STUDY = 99, CI_TOTAL = 99, EFFECT_MEASURE = "OR", METHOD = "IV", RANDOM = "NO", LOG_DATA = "YES",
                  TOTALS = "YES", SUBGROUPS = "NO", ESTIMABLE = "YES"))
o31 <- outcome_xml("IV", "003.01", "Lung cancer (log odds ratio and SE, IV fixed, 99% CI)", iv_head,
                   c("Spouse smokes", "Spouse never smoked"), data_rows("IV_DATA", h, iv_extra))
cmp3 <- c('<COMPARISON ID="CMP-003" NO="3">', "<NAME>Spouse smokes versus never smoked</NAME>", o31, "</COMPARISON>")

# ---------------------------------------------------------------- the file
studies <- unique(rbind(data.frame(study = b$study, year = b$year), data.frame(study = s$study, year = NA),
                        data.frame(study = h$study, year = h$year)))
study_xml <- sprintf('<STUDY DATA_SOURCE="PUB" ID="%s" NAME="%s" YEAR="%s"></STUDY>', study_id(studies$study),
                     esc(studies$study), ifelse(is.na(studies$year), "", studies$year))
doc <- c('<?xml version="1.0" encoding="UTF-8" standalone="no"?>',
         sprintf('<COCHRANE_REVIEW REVMAN_VERSION="5" TYPE="INTERVENTION" DESCRIPTION="pfps-meta test file: metadat %s, totals by metafor %s">',
                 packageVersion("metadat"), packageVersion("metafor")),
         "<COVER_SHEET><TITLE>pfps-meta RevMan import examples (public datasets)</TITLE></COVER_SHEET>",
         "<STUDIES_AND_REFERENCES><STUDIES><INCLUDED_STUDIES>", study_xml,
         "</INCLUDED_STUDIES></STUDIES></STUDIES_AND_REFERENCES>",
         '<ANALYSES_AND_DATA CALCULATED_DATA="YES">', cmp1, cmp2, cmp3, "</ANALYSES_AND_DATA>", "</COCHRANE_REVIEW>")
writeLines(doc, file.path(out_dir, "examples.rm5"), useBytes = TRUE)
cat("wrote", file.path(out_dir, "examples.rm5"), "\n")
