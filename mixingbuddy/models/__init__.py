"""Making models: from the real component checkpoints, tiny random ones for tests and the demo, and saved folders."""
