"""The 🤗 Evaluate modules of the project, installed as `mixingbuddy.metrics` (see `mixingbuddy.metric_path`)."""
