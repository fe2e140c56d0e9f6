"""Analysis of one run's cache: metrics.json, centroids.json, why.json, the figures and the explorer's tables."""
