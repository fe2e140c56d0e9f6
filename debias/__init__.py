"""Runs made from another run's cache without training: logit adjustment, prior matching, concept alignment."""
