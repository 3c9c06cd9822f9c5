"""Filling a competition's sample submission with our predictions, keeping its ids, order and columns."""

from __future__ import annotations

import logging

import pandas as pd

from ..errors import DataError
from .tables import ROW, first_bad, read_table, require_columns

log = logging.getLogger("kluekit")


def check_sample_submission(path, examples_ids, has_ids: bool, target: str = "target") -> pd.DataFrame:
    """Read the sample submission and check it against the input's ids, before any prediction is made.

    It needs ``id`` and ``target`` columns; with ``has_ids`` every sample id must be an input id
    (compared as text), else (no ids to match by) it must have as many rows as the input. Returns the
    sample table (with ``_row``); DataError ``file:row: column: problem`` otherwise (a missing file too).
    """
    sample = read_table(path)
    require_columns(sample, path, ["id", target])
    ids = pd.Series(examples_ids, dtype=object).astype(str)
    if not has_ids:
        if len(sample) != len(ids):
            raise DataError(path, 1, None, f"has {len(sample)} rows but the input has {len(ids)} "
                                           "and no id column to match them by")
        return sample
    missing = ~sample["id"].isin(ids).to_numpy()
    row = first_bad(sample, missing)
    if row is not None:
        raise DataError(path, row, "id", f"id {sample['id'].to_numpy()[missing.argmax()]!r} is not in the input file")
    return sample


def fill_sample_submission(path, predictions: pd.DataFrame, match_ids: bool = True,
                           target: str = "target") -> pd.DataFrame:
    """Return the sample file with its ``target`` column filled from ``predictions`` (id, target).

    Rows are matched by id; when the input file had no ids, by position (row counts must agree).
    Predictions for ids that are not in the sample are left out (and counted in the log); a duplicate
    prediction id is an error. The sample is checked by ``check_sample_submission``.
    """
    sample = check_sample_submission(path, predictions["id"], match_ids, target).drop(columns=[ROW])
    if not match_ids:
        sample[target] = predictions[target].to_numpy()
        log.info("filled the %d rows of the sample submission %s, in its order", len(sample), path)
        return sample
    ids = predictions["id"].astype(str)
    if ids.duplicated().any():
        raise DataError(predictions.attrs.get("path", "predictions"), 0, "id",
                        f"duplicate id {ids[ids.duplicated()].iloc[0]!r} in the predictions")
    by_id = pd.Series(predictions[target].to_numpy(), index=ids.to_numpy())
    sample[target] = sample["id"].map(by_id).to_numpy()
    left_out = int((~ids.isin(sample["id"])).sum())
    log.info("filled the %d rows of the sample submission %s, in its order%s", len(sample), path,
             f" ({left_out} of the {len(predictions)} predicted rows are not in it and are left out)"
             if left_out else "")
    return sample
