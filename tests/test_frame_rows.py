"""formatting.frame_rows / frame_records: a frame's rows as plain Python values, the one reader the tables,
figures and reproduce use."""

import numpy as np
import pandas as pd

from pfps_meta.formatting import frame_records, frame_rows


def test_rows_are_the_values_itertuples_gives_in_column_order():
    frame = pd.DataFrame({"study": ["a", "b"], "yi": [0.5, np.nan], "n": [10, 12]})
    assert repr(frame_rows(frame)) == repr([tuple(r) for r in frame.itertuples(index=False)])   # NaN != NaN
    assert all(type(v) in (str, float, int) for row in frame_rows(frame) for v in row)
    assert frame_records(frame, ["n", "study"]) == [{"n": 10, "study": "a"}, {"n": 12, "study": "b"}]


def test_repeated_column_names_are_read_by_position_and_no_columns_give_empty_rows():
    frame = pd.DataFrame([[1, 2], [3, 4]], columns=["x", "x"])
    assert frame_rows(frame) == [(1, 2), (3, 4)]
    assert frame_records(frame) == [{"x": 2}, {"x": 4}]         # a dict keeps the last of a repeated name
    empty = pd.DataFrame(index=range(3))
    assert frame_rows(empty) == [(), (), ()]
    records = frame_records(empty)
    assert records == [{}, {}, {}] and records[0] is not records[1]
