"""fin2mqtt benchmarks (not shipped): ratios against baselines run in the same process."""
