"""Agent evaluation: datasets, scorers, metrics with intervals, comparisons and a CI gate."""
