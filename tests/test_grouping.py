"""Grouping (pure): unique values robust to float noise and spelling, groups by several keys."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.table import Column, MaskedColumn, Table

from calstack.catalog.grouping import Group, group_by, unique_values
from calstack.errors import OptionError, UnknownOptionError


def table(**columns):
    """An index-like table; a value None becomes a masked cell."""
    out = Table()
    n = len(next(iter(columns.values())))
    out["path"] = [f"/data/f{i}.fits" for i in range(n)]
    out["hdu"] = np.zeros(n, dtype=np.int64)
    for name, values in columns.items():
        if any(v is None for v in values):
            fill = next(v for v in values if v is not None)
            out[name] = MaskedColumn([fill if v is None else v for v in values],
                                     mask=[v is None for v in values])
        else:
            out[name] = Column(values)
    if "error" not in columns:
        out["error"] = [""] * n
    return out


# --------------------------------------------------------------------------- unique_values
def test_float_noise_is_one_value():
    assert unique_values([7.0, 70.0, 7.0000001, 300.0, 70.00000002, 7.0]) == [7.0, 70.0, 300.0]
    assert unique_values([0.0, 0.0, 1e-12]) == [0.0]


def test_representative_is_the_median_member():
    values = unique_values([7.0000002, 7.0, 7.0000001])
    assert values == [7.0000001]
    assert unique_values([90.0, 90.0000001, 90.0000003, 90.0000004]) == [90.0000001]


def test_genuinely_different_values_stay_apart():
    assert unique_values([7.0, 7.001, 0.001, 0.0015]) == [0.001, 0.0015, 7.0, 7.001]
    assert unique_values([1, 2, 2, 3]) == [1, 2, 3]
    assert all(type(v) is int for v in unique_values([1, 2, 2, 3]))


def test_explicit_tolerance_chains_neighbours():
    temps = [-20.1, -19.9, -20.0, -10.0, -10.3, 5.0]
    assert unique_values(temps, tolerance=0.5) == [-20.0, -10.3, 5.0]
    assert unique_values(temps, tolerance=0) == sorted(temps)
    assert unique_values([1, 2, 3, 4], tolerance=1) == [2]  # 1-2-3-4 chain into one cluster


def test_strings_case_and_blanks():
    assert unique_values(["Dark", "DARK ", " dark", "Bias Frame", "bias frame"]) == [
        "Bias Frame", "Dark"]
    assert unique_values(np.array(["R", "r", "V"])) == ["R", "V"]


def test_missing_values_are_skipped():
    col = MaskedColumn([7.0, 0.0, 70.0, np.nan], mask=[False, True, False, False])
    assert unique_values(col) == [7.0, 70.0]
    assert unique_values([None, "R", None]) == ["R"]
    assert unique_values([]) == []
    assert unique_values([True, False, True]) == [False, True]


def test_bad_tolerance():
    with pytest.raises(OptionError, match="tolerance must be a finite number >= 0"):
        unique_values([1.0], tolerance=-1)
    with pytest.raises(OptionError, match="tolerance must be"):
        unique_values([1.0], tolerance="1")
    with pytest.raises(OptionError, match="values are strings"):
        unique_values(["R"], tolerance=0.1)


# --------------------------------------------------------------------------- group_by
def test_group_by_exptime_with_noise():
    t = table(exptime=[7.0, 70.0, 7.0000001, 300.0, 70.0, 7.0])
    groups = group_by(t, "exptime")
    assert [g.key for g in groups] == [{"exptime": 7.0}, {"exptime": 70.0}, {"exptime": 300.0}]
    assert [g.rows for g in groups] == [(0, 2, 5), (1, 4), (3,)]
    assert groups[0].paths == ("/data/f0.fits", "/data/f2.fits", "/data/f5.fits")
    assert groups[0].hdus == (0, 0, 0)
    assert [g.label() for g in groups] == ["exptime=7.000", "exptime=70.000", "exptime=300.000"]
    assert all(type(g.key["exptime"]) is float for g in groups)


def test_multi_key_sorted_and_labelled():
    t = table(filter=["R", "v", "r ", "V", "R"], exptime=[10.0, 10.0, 20.0, 10.0, 10.0000001],
              xbinning=[1, 1, 1, 1, 2])
    groups = group_by(t, ["FILTER", "exptime"])
    assert [(g.key, g.rows) for g in groups] == [
        ({"filter": "R", "exptime": 10.0}, (0, 4)),
        ({"filter": "R", "exptime": 20.0}, (2,)),
        ({"filter": "v", "exptime": 10.0}, (1, 3)),
    ]
    assert groups[0].label() == "filter=R exptime=10.000"
    binned = group_by(t, ["exptime", "xbinning"])
    assert [(g.key, g.rows) for g in binned] == [
        ({"exptime": 10.0, "xbinning": 1}, (0, 1, 3)),
        ({"exptime": 10.0, "xbinning": 2}, (4,)),
        ({"exptime": 20.0, "xbinning": 1}, (2,)),
    ]
    assert binned[1].label() == "exptime=10.000 xbinning=2"


def test_tolerances_and_name_matching():
    t = table(**{"ccd-temp": [-20.1, -19.9, -20.0, -10.0]})
    # CCD-TEMP's default: within 2 degC (set-points differ by more)
    assert [g.rows for g in group_by(t, "ccd_temp")] == [(0, 1, 2), (3,)]
    assert [g.rows for g in group_by(t, "ccd_temp", tolerances={"ccd-temp": 0})] == [
        (0,), (2,), (1,), (3,)]
    groups = group_by(t, "CCD_TEMP", tolerances={"ccd-temp": 0.5})
    assert [(g.key, g.rows) for g in groups] == [({"ccd-temp": -20.0}, (0, 1, 2)),
                                                 ({"ccd-temp": -10.0}, (3,))]
    assert group_by(t, "ccd-temp", tolerances={"CCD_TEMP": 0.5})[0].rows == (0, 1, 2)


def test_missing_values_and_unreadable_rows():
    t = table(exptime=[7.0, None, 7.0, 70.0],
              error=["", "", "truncated", ""])
    groups = group_by(t, "exptime")
    assert [(g.key, g.rows) for g in groups] == [({"exptime": 7.0}, (0,)),
                                                 ({"exptime": 70.0}, (3,))]
    with pytest.raises(OptionError, match="'FILTER'"):
        group_by(table(exptime=[1.0, 2.0], filter=[None, "x"])[:1], ["exptime", "filter"])
    assert group_by(table(exptime=[1.0], error=["bad"]), "exptime") == []


def test_no_keys_is_one_group():
    t = table(exptime=[1.0, 2.0, 3.0], error=["", "bad", ""])
    (group,) = group_by(t, [])
    assert group.key == {}
    assert group.rows == (0, 2)
    assert group.label() == ""


def test_unknown_names():
    t = table(exptime=[1.0], imagetyp=["DARK"])
    with pytest.raises(UnknownOptionError, match="did you mean 'exptime'") as info:
        group_by(t, "exptme")
    assert isinstance(info.value, TypeError)
    with pytest.raises(UnknownOptionError, match="not a grouping key"):
        group_by(t, "exptime", tolerances={"imagetyp": 1})
    with pytest.raises(UnknownOptionError, match="did you mean 'exptime'"):
        group_by(t, "exptime", tolerances={"exptim": 1})
    with pytest.raises(OptionError, match="values are strings"):
        group_by(t, "imagetyp", tolerances={"imagetyp": 1})
    with pytest.raises(OptionError, match="given twice"):
        group_by(t, ["exptime", "EXPTIME"])
    with pytest.raises(OptionError, match="no 'path' column"):
        group_by(Table({"exptime": [1.0]}), "exptime")


def test_accepts_an_index_and_real_index_tables(tmp_path):
    from astropy.io import fits

    from calstack.catalog.index import ImageIndex

    for i, (exptime, filt) in enumerate([(7.0, "R"), (7.0000001, "r"), (70.0, "R")]):
        fits.writeto(tmp_path / f"d{i}.fits", np.zeros((2, 2), np.float32),
                     fits.Header({"IMAGETYP": "DARK", "EXPTIME": exptime, "FILTER": filt}))
    (tmp_path / "junk.fits").write_text("junk")
    index = ImageIndex(tmp_path)
    groups = group_by(index, "exptime")
    assert [(g.key, len(g.paths)) for g in groups] == [({"exptime": 7.0}, 2),
                                                      ({"exptime": 70.0}, 1)]
    assert groups[0].paths == (str(tmp_path / "d0.fits"), str(tmp_path / "d1.fits"))
    assert group_by(SimpleNamespace(table=index.table), "filter")[0].key == {"filter": "R"}
    # each group's representative selects the same frames with index.filter
    for g in groups:
        assert index.files(exptime=g.key["exptime"], include_path=True) == list(g.paths)


def test_group_is_frozen():
    g = Group(key={"exptime": 1.0}, rows=(0,), paths=("a",), hdus=(0,))
    with pytest.raises(AttributeError):
        g.rows = (1,)
    assert math.isclose(g.key["exptime"], 1.0)
