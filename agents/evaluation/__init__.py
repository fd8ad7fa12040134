"""Evaluation: the horizon sweep and its results file, the report, the best in class of each
policy class (exact or estimated), and the speed benchmarks."""
