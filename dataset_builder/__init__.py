"""The flawed-mix data set: a `datasets` builder over a MUSDB18HQ-layout folder, a stem cache and a synthetic corpus."""
