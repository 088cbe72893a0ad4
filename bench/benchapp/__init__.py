"""The benchmarks' model: a realistic article row served through the cache."""
