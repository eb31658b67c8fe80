"""listingbot benchmarks: `make bench` (see README, Performance)."""
