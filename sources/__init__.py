"""Where a run's images and classes come from: the dataset's class names, prompts and splits."""
