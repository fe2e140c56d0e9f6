"""Inference: a model over a dataset's images, chunk by chunk, into the run's cache (torch lives here)."""
