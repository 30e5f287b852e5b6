"""`mixingbuddy synth-stems` and `mixingbuddy build-dataset`."""


def add_dataset_commands(commands) -> None:
    """Register the data-set sub-commands on the `mixingbuddy` parser."""
