"""Filling a competition's sample submission with our predictions, keeping its ids, order and columns."""

from __future__ import annotations

import pandas as pd

from ..errors import DataError
from .tables import ROW, read_table, require_columns


def fill_sample_submission(path, predictions: pd.DataFrame, match_ids: bool = True,
                           target: str = "target") -> pd.DataFrame:
    """Return the sample file with its ``target`` column filled from ``predictions`` (id, target).

    Rows are matched by id; when the input file had no ids, by position (row counts must agree).
    """
    sample = read_table(path)
    require_columns(sample, path, ["id", target])
    sample = sample.drop(columns=[ROW])
    if not match_ids:
        if len(sample) != len(predictions):
            raise DataError(path, 1, None, f"has {len(sample)} rows but the input has {len(predictions)} "
                                           "and no id column to match them by")
        sample[target] = predictions[target].to_numpy()
        return sample
    by_id = pd.Series(predictions[target].to_numpy(), index=predictions["id"].astype(str))
    missing = ~sample["id"].isin(by_id.index)
    if missing.any():
        row = int(missing.to_numpy().argmax()) + 2
        raise DataError(path, row, "id", f"id {sample['id'].iloc[row - 2]!r} is not in the input file")
    sample[target] = by_id.loc[sample["id"]].to_numpy()
    return sample
