"""Evaluation: generating advice for a data-set split with one of three decodings, scoring it against the ground
truth, and the report (metrics, tables, confusion plots)."""

DECODINGS = ("greedy", "constrained", "ranked")  # see `generation.generate_advice`
