"""Benchmarks: data generator, reference apps and the wrk runner (see README, "Performance")."""
