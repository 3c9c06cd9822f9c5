"""Filling a competition's sample submission with our predictions, keeping its ids, order and columns."""

from __future__ import annotations

import pandas as pd

from ..errors import DataError
from .tables import ROW, first_bad, read_table, require_columns


def fill_sample_submission(path, predictions: pd.DataFrame, match_ids: bool = True,
                           target: str = "target") -> pd.DataFrame:
    """Return the sample file with its ``target`` column filled from ``predictions`` (id, target).

    Rows are matched by id; when the input file had no ids, by position (row counts must agree).
    Predictions for ids that are not in the sample are ignored; a duplicate prediction id is an error.
    """
    sample = read_table(path)
    require_columns(sample, path, ["id", target])
    rows, sample = sample, sample.drop(columns=[ROW])
    if not match_ids:
        if len(sample) != len(predictions):
            raise DataError(path, 1, None, f"has {len(sample)} rows but the input has {len(predictions)} "
                                           "and no id column to match them by")
        sample[target] = predictions[target].to_numpy()
        return sample
    ids = predictions["id"].astype(str)
    if ids.duplicated().any():
        raise DataError(predictions.attrs.get("path", "predictions"), 0, "id",
                        f"duplicate id {ids[ids.duplicated()].iloc[0]!r} in the predictions")
    by_id = pd.Series(predictions[target].to_numpy(), index=ids.to_numpy())
    missing = ~sample["id"].isin(by_id.index).to_numpy()
    row = first_bad(rows, missing)
    if row is not None:
        raise DataError(path, row, "id", f"id {sample['id'].to_numpy()[missing.argmax()]!r} is not in the input file")
    sample[target] = sample["id"].map(by_id).to_numpy()
    return sample
