"""The runs: the cache's format, the run folders and their descriptors, atomic outputs. Ground floor: stdlib and numpy."""
