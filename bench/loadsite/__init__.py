"""The example project as the load benchmark serves it: PostgreSQL, Redis, one cache variant."""
