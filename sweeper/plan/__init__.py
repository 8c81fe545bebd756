"""A sweep config to its points (hashed, feasible), trials (seeded) and cost."""
