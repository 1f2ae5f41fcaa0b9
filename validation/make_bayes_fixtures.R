# Reference posteriors of the normal-normal hierarchical model for tests/test_bayes.py.
#
# An independent quadrature, written for this check (not bayesmeta, which is not installable here):
# R's integrate() over u = log(tau) at rel.tol 1e-10 (split at the posterior mode), the closed-form
# normal conditionals for mu given tau, and uniroot() for quantiles (the upper limit is the mode + 50 in
# log tau, where every posterior here is below 1e-20 of its peak). Shortest intervals minimise the
# width over the lower tail probability with optimize().
#
#   Rscript validation/make_bayes_fixtures.R      # writes tests/fixtures/bayes/*.json
suppressPackageStartupMessages({library(metafor); library(jsonlite)})
out_dir <- file.path("tests", "fixtures", "bayes")
dir.create(out_dir, showWarnings = FALSE, recursive = TRUE)
RT <- 1e-10

log_prior_u <- function(prior, u) {
  # log density of u = log(tau)
  switch(prior$family,
    "half-normal" = log(2) + dnorm(exp(u), 0, prior$params[1], log = TRUE) + u,
    "half-cauchy" = log(2) + dcauchy(exp(u), 0, prior$params[1], log = TRUE) + u,
    "log-t5" = log(2) + dt((2 * u - prior$params[1]) / prior$params[2], df = 5, log = TRUE) - log(prior$params[2]),
    "log-normal" = log(2) + dnorm(2 * u, prior$params[1], prior$params[2], log = TRUE),
    stop("unknown prior"))
}

cond <- function(y, v, tau2, mu_prior) {
  w <- 1 / (v + tau2)
  k <- length(y)
  if (is.null(mu_prior)) {
    P <- sum(w); m <- sum(w * y) / P
    q <- sum(w * (y - m)^2)
    ll <- -0.5 * (k - 1) * log(2 * pi) + 0.5 * sum(log(w)) - 0.5 * log(P) - 0.5 * q
  } else {
    p0 <- 1 / mu_prior[2]^2
    P <- sum(w) + p0; m <- (sum(w * y) + p0 * mu_prior[1]) / P
    q <- sum(w * (y - m)^2) + p0 * (m - mu_prior[1])^2
    ll <- -0.5 * k * log(2 * pi) + 0.5 * sum(log(w)) + 0.5 * log(p0) - 0.5 * log(P) - 0.5 * q
  }
  list(ll = ll, m = m, V = 1 / P)
}

posterior <- function(y, v, prior, mu_prior = NULL, level = 0.95) {
  logf <- function(u) sapply(u, function(uu) log_prior_u(prior, uu) + cond(y, v, exp(2 * uu), mu_prior)$ll)
  mode <- optimize(function(u) -logf(u), c(-15, 5), tol = 1e-12)$minimum
  c0 <- logf(mode)
  f <- function(u) exp(logf(u) - c0)
  int2 <- function(g) integrate(g, -Inf, mode, rel.tol = RT, subdivisions = 2000L)$value +
    integrate(g, mode, mode + 50, rel.tol = RT, subdivisions = 2000L)$value
  Z <- int2(f)
  mcomp <- function(u) sapply(u, function(uu) cond(y, v, exp(2 * uu), mu_prior)$m)
  Vcomp <- function(u) sapply(u, function(uu) cond(y, v, exp(2 * uu), mu_prior)$V)
  mix <- function(mean_fun, var_fun, shortest = TRUE) {
    cdf <- function(x) int2(function(u) pnorm((x - mean_fun(u)) / sqrt(var_fun(u))) * f(u)) / Z
    mean <- int2(function(u) mean_fun(u) * f(u)) / Z
    second <- int2(function(u) (var_fun(u) + mean_fun(u)^2) * f(u)) / Z
    sd <- sqrt(second - mean^2)
    q <- function(p) uniroot(function(x) cdf(x) - p, mean + c(-20, 20) * sd, tol = 1e-13)$root
    out <- list(median = q(0.5), mean = mean, sd = sd, lower = q((1 - level) / 2), upper = q(1 - (1 - level) / 2),
                cdf = cdf)
    if (shortest) {
      a <- optimize(function(a) q(a + level) - q(a), c(1e-7, 1 - level - 1e-7), tol = 1e-10)$minimum
      out$shortest_lower <- q(a); out$shortest_upper <- q(a + level)
    }
    out
  }
  mu <- mix(mcomp, Vcomp)
  theta <- mix(mcomp, function(u) Vcomp(u) + exp(2 * u))
  tau_cdf <- function(t) integrate(f, -Inf, log(t), rel.tol = RT, subdivisions = 2000L)$value / Z
  tq <- function(p) exp(uniroot(function(lt) tau_cdf(exp(lt)) - p, c(-80, 6), tol = 1e-13)$root)
  tmean <- int2(function(u) exp(u) * f(u)) / Z
  tsd <- sqrt(int2(function(u) exp(2 * u) * f(u)) / Z - tmean^2)
  a <- optimize(function(a) tq(a + level) - tq(a), c(1e-6, 1 - level), tol = 1e-10)$minimum
  zero_width <- tq(level)
  if (zero_width < tq(a + level) - tq(a)) { sl <- 0; su <- zero_width } else { sl <- tq(a); su <- tq(a + level) }
  tau <- list(median = tq(0.5), mean = tmean, sd = tsd, lower = tq((1 - level) / 2), upper = tq(1 - (1 - level) / 2),
              shortest_lower = sl, shortest_upper = su)
  studies <- lapply(seq_along(y), function(i) {
    b <- function(u) v[i] / (v[i] + exp(2 * u))
    s <- mix(function(u) b(u) * mcomp(u) + (1 - b(u)) * y[i], function(u) (1 - b(u)) * v[i] + b(u)^2 * Vcomp(u),
             shortest = FALSE)
    s$cdf <- NULL; s
  })
  log_z <- c0 + log(Z)
  bf_tau0 <- exp(cond(y, v, 0, mu_prior)$ll - log_z)
  mu_cdf <- mu$cdf; mu$cdf <- NULL; theta$cdf <- NULL
  res <- list(mu = mu, tau = tau, theta_new = theta, studies = studies,
              log_marginal_likelihood = if (is.null(mu_prior)) NULL else log_z, bayes_factor_tau0 = bf_tau0,
              prob_mu_below = list(threshold = -0.2, p = mu_cdf(-0.2)))
  if (!is.null(mu_prior)) {
    dens0 <- int2(function(u) dnorm(0, mcomp(u), sqrt(Vcomp(u))) * f(u)) / Z
    res$bayes_factor_mu0 <- dens0 / dnorm(0, mu_prior[1], mu_prior[2])
  }
  res
}

write_case <- function(name, analysis, yi, vi, labels, prior, mu_prior = NULL, bayesmeta = NULL) {
  post <- posterior(yi, vi, prior, mu_prior)
  case <- list(name = name, analysis = analysis, yi = yi, vi = vi, labels = labels,
               tau_prior = prior, mu_prior = mu_prior, level = 0.95, reference = post, bayesmeta_printed = bayesmeta,
               method = paste("R integrate() over log(tau), rel.tol 1e-10, uniroot tol 1e-13;",
                              R.version.string, "metafor", as.character(packageVersion("metafor"))))
  writeLines(toJSON(case, auto_unbox = TRUE, digits = NA, pretty = TRUE, null = "null"),
             file.path(out_dir, paste0(name, ".json")))
  cat(name, ": mu", post$mu$median, "[", post$mu$lower, post$mu$upper, "] tau", post$tau$median, "[",
      post$tau$lower, post$tau$upper, "]\n")
}

hn05 <- list(family = "half-normal", params = c(0.5))
rhodes <- list(family = "log-t5", params = c(-3.02, 2.27), table = "rhodes2015", outcome = "pain_function",
               comparison = "non_pharmacological")

dat <- escalc("SMD", m1i = m1i, sd1i = sd1i, n1i = n1i, m2i = m2i, sd2i = sd2i, n2i = n2i, data = dat.normand1999)
write_case("normand1999_half_normal", "normand1999 SMD (Hedges' g), tau ~ half-normal(0.5)", as.numeric(dat$yi),
           as.numeric(dat$vi), as.character(dat$source), hn05,
           bayesmeta = list(mu_median = -0.5314, mu_lower = -1.1238, mu_upper = 0.0500))
write_case("normand1999_rhodes", "normand1999 SMD, Rhodes 2015 pain/function, non-pharmacological", as.numeric(dat$yi),
           as.numeric(dat$vi), as.character(dat$source), rhodes)
r85 <- dat.raudenbush1985
write_case("raudenbush1985_rhodes", "raudenbush1985 SMD, Rhodes 2015 pain/function, non-pharmacological",
           as.numeric(r85$yi), as.numeric(r85$vi), paste(r85$author, r85$year), rhodes)
write_case("three_trials_half_normal", "three small trials, tau ~ half-normal(0.5)", c(-1.10, -0.45, -1.80),
           c(0.40, 0.35, 0.50)^2, c("A", "B", "C"), hn05,
           bayesmeta = list(mu_median = -1.0182, mu_lower = -1.8188, mu_upper = -0.3034, tau_median = 0.3841,
                            theta_lower = -2.3863, theta_upper = 0.2456))
write_case("three_trials_rhodes", "three small trials (SMD), Rhodes 2015 pain/function, non-pharmacological",
           c(-1.10, -0.45, -1.80), c(0.40, 0.35, 0.50)^2, c("A", "B", "C"), rhodes)
write_case("raudenbush1985_half_cauchy_normal_mu", "raudenbush1985, tau ~ half-Cauchy(0.5), mu ~ N(0, 1)",
           as.numeric(r85$yi), as.numeric(r85$vi), paste(r85$author, r85$year),
           list(family = "half-cauchy", params = c(0.5)), mu_prior = c(0, 1))
