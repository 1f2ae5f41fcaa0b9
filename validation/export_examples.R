# Writes the example datasets in data/examples/ from the R package metadat, with their sources.
# Run from the repository root:  Rscript validation/export_examples.R
# The numbers are metadat's, which transcribes them from the cited publications.
suppressPackageStartupMessages(library(metadat))
ver <- as.character(packageVersion("metadat"))

n <- dat.normand1999
write.csv(data.frame(
  study = n$source, n_exp = n$n1i, mean_exp = n$m1i, sd_exp = n$sd1i,
  n_ctrl = n$n2i, mean_ctrl = n$m2i, sd_ctrl = n$sd2i,
  source = paste0("Normand SLT (1999) Stat Med 18(3):321-359, length of stay (days), specialist (exp) vs routine (ctrl) stroke care; transcribed in R package metadat ", ver, " dat.normand1999")),
  "data/examples/normand1999.csv", row.names = FALSE)

h <- dat.hackshaw1998
write.csv(data.frame(
  study = paste(h$author, h$year), country = h$country, design = h$design, cases = h$cases,
  estimate = h$or, ci_low = h$or.lb, ci_high = h$or.ub,
  source = paste0("Hackshaw AK, Law MR, Wald NJ (1997) BMJ 315:980-988, study odds ratios with 95% CI; transcribed in R package metadat ", ver, " dat.hackshaw1998")),
  "data/examples/hackshaw1998.csv", row.names = FALSE)

b <- dat.bcg
write.csv(data.frame(
  study = paste(b$author, b$year), events_exp = b$tpos, n_exp = b$tpos + b$tneg,
  events_ctrl = b$cpos, n_ctrl = b$cpos + b$cneg, ablat = b$ablat, alloc = b$alloc, year = b$year,
  source = paste0("Colditz GA et al. (1994) JAMA 271(9):698-702, Table 1 (TB cases / group size, vaccinated = exp); transcribed in R package metadat ", ver, " dat.bcg")),
  "data/examples/bcg.csv", row.names = FALSE)
cat("wrote data/examples/{normand1999,hackshaw1998,bcg}.csv\n")
