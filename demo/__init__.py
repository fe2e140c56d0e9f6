"""The demo's inputs: generated images and random weights (synthetic), SIMULATED logits (simulation)."""
