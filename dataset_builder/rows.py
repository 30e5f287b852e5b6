"""A data-set row as plain Python values, whatever form `datasets` or pandas hands it over in."""

from __future__ import annotations

from collections.abc import Mapping


def as_row(row) -> dict:
    """`row` as a dict of Python numbers, strings and lists.

    Accepts a row as `datasets` gives it in every format — python, numpy, torch (numbers as 0-d tensors), pandas (a
    one-row DataFrame), arrow (a one-row Table) — and as `Dataset.to_pandas().to_dict("records")` gives it (list
    fields as lists, tuples or numpy arrays).
    """
    if hasattr(row, "to_pylist"):  # pyarrow.Table
        (row,) = row.to_pylist()
    elif hasattr(row, "to_dict") and hasattr(row, "columns"):  # pandas.DataFrame
        (row,) = row.to_dict("records")
    if not isinstance(row, Mapping):
        raise TypeError(f"A data-set row must be a mapping of field names to values, got {type(row).__name__}.")
    return {key: _plain(value) for key, value in row.items()}


def _plain(value):
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
