"""ImageIndex: scanning folders, one row per image, error rows, case-insensitive filtering."""

import warnings

import numpy as np
import pytest
from astropy.io import fits
from astropy.table import Table
from conftest import SMALL_DATA, column, frame

from calstack.catalog.index import DEFAULT_KEYWORDS, ImageIndex
from calstack.errors import OptionError, UnknownOptionError


# --------------------------------------------------------------------------- the table
def test_rows_columns_and_types(messy):
    index = ImageIndex(messy)
    t = index.table
    # the keywords asked for, the setup keywords some frame has (g_mef's CCDNAME), why a frame
    # is a master, the error
    assert t.colnames == ["file", "path", "hdu", "extname",
                          *[k.lower() for k in DEFAULT_KEYWORDS], "ccdname", "master", "error"]
    assert column(index, "file") == [
        "a_dark7.fits", "b_dark7_noise.FIT", "c_dark70.fts", "d_bias.fits", "e_dark300.fits.gz",
        "f_flat.fits.fz", "g_mef.fits", "g_mef.fits", "h_notfits.fits", "i_truncated.fits"]
    assert column(index, "hdu") == [0, 0, 0, 0, 0, 1, 1, 2, -1, -1]
    assert column(index, "path") == [str(messy / f) for f in column(index, "file")]
    assert column(index, "extname") == [None] * 5 + ["COMPRESSED_IMAGE", "CCD1", "CCD2", None,
                                                     None]
    assert column(index, "imagetyp") == ["DARK", "dark", "Dark", "Bias Frame", "DARK", "FLAT",
                                         "DARK", "DARK", None, None]
    assert column(index, "exptime") == [7.0, 7.0000001, 70.0, 0.0, 300.0, None, 70.0, 71.0,
                                        None, None]
    assert t["exptime"].dtype == np.float64
    assert t["naxis1"].dtype == np.int64
    assert t["imagetyp"].dtype.kind == "U"
    assert t["hdu"].dtype == np.int64
    # the compressed image reports the image's BITPIX and size, not the BINTABLE's
    assert column(index, "bitpix") == [-32, -32, -32, 16, -32, -32, -32, -32, None, None]
    assert column(index, "naxis1")[5] == 12
    assert column(index, "naxis2")[5] == 8
    assert column(index, "ccd-temp")[2] == -20.0
    assert column(index, "gain")[1] == 1.5
    # extension rows inherit the primary keywords they lack (OBJECT) and keep their own
    assert column(index, "object")[6:8] == ["primary", "primary"]
    assert len(index) == 10
    assert index.summary is index.table


def test_the_light_frame_table_holds_the_same_columns_as_the_astropy_table(messy):
    index = ImageIndex(messy)
    light, table = index.frame_table, index.table
    assert light.colnames == table.colnames
    assert len(light) == len(table) == 10
    for name in table.colnames:
        assert light[name].dtype == table[name].dtype, name
        assert np.ma.getmaskarray(light[name]).tolist() == np.ma.getmaskarray(table[name]).tolist()
        assert np.ma.filled(light[name]).tolist() == np.ma.filled(table[name]).tolist(), name
    rows = light[np.asarray(light["hdu"]) > 0]  # a selection of rows keeps the shared meta
    assert list(rows["extname"]) == ["COMPRESSED_IMAGE", "CCD1", "CCD2"]
    assert rows.meta is light.meta
    assert str(messy / "g_mef.fits") in rows.meta["identity"]


def test_unreadable_files_are_rows_not_exceptions(messy):
    index = ImageIndex(messy)
    bad = index.unreadable
    assert list(bad["file"]) == ["h_notfits.fits", "i_truncated.fits"]
    assert list(bad["hdu"]) == [-1, -1]
    assert "not a FITS file" in bad["error"][0]
    assert bad["error"][1] == ("truncated: data ends at byte 5000 of 82880 expected; "
                               "re-copy the file")
    assert all(e == "" for e in index.table["error"][:8])
    assert np.ma.getmaskarray(bad["imagetyp"]).all()


def test_recursive_include_exclude(messy):
    assert "sub/j_dark7.fits" not in ImageIndex(messy).files()
    index = ImageIndex(messy, recursive=True)
    assert index.files()[-1] == "sub/j_dark7.fits"
    assert index.files(include_path=True)[-1] == str(messy / "sub" / "j_dark7.fits")
    assert ImageIndex(messy, include="*dark7[._]*", recursive=True).files() == [
        "a_dark7.fits", "b_dark7_noise.FIT", "sub/j_dark7.fits"]
    assert ImageIndex(messy, include=["a_*", "c_*"]).files() == ["a_dark7.fits", "c_dark70.fts"]
    assert ImageIndex(messy, exclude=["*.gz", "*.fz", "[ghi]_*"]).files() == [
        "a_dark7.fits", "b_dark7_noise.FIT", "c_dark70.fts", "d_bias.fits"]
    assert ImageIndex(messy, recursive=True, exclude="sub/*").files() == ImageIndex(messy).files()


def test_explicit_files_and_several_locations(messy, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    frame(other / "x.fits", IMAGETYP="BIAS", EXPTIME=0.0)
    index = ImageIndex([messy / "c_dark70.fts", other, messy / "c_dark70.fts"])
    assert index.files() == ["c_dark70.fts", "x.fits"]
    assert index.files(include_path=True) == [str(messy / "c_dark70.fts"), str(other / "x.fits")]
    assert index.locations == (str(messy / "c_dark70.fts"), str(other), str(messy / "c_dark70.fts"))


def test_all_keywords(messy):
    index = ImageIndex(messy, keywords="*")
    names = index.table.colnames
    assert names[:4] == ["file", "path", "hdu", "extname"]
    assert names[-1] == "error"
    for name in ("simple", "bitpix", "naxis1", "imagetyp", "exptime", "filter", "gain",
                 "ccd-temp", "ccdname", "bzero", "object"):
        assert name in names
    assert "extname" not in names[4:]
    assert "ttype1" not in names
    assert "zimage" not in names
    assert column(index, "ccdname")[6:8] == ["left", "right"]
    assert column(index, "gain") == [None, 1.5] + [None] * 8
    assert column(index, "bzero")[3] == 32768


def test_chosen_keywords_and_hierarch(tmp_path):
    hdr = fits.Header({"EXPTIME": 5.0})
    hdr["HIERARCH ESO DET DIT"] = 5.0
    fits.writeto(tmp_path / "eso.fits", SMALL_DATA, hdr)
    index = ImageIndex(tmp_path, keywords=["exptime", "HIERARCH ESO DET DIT", "MISSING"])
    assert index.table.colnames == ["file", "path", "hdu", "extname", "exptime", "eso det dit",
                                    "missing", "naxis1", "naxis2", "master", "error"]
    assert column(index, "eso det dit") == [5.0]
    assert column(index, "missing") == [None]
    assert index.files({"eso det dit": 5}) == ["eso.fits"]
    assert index.files({"HIERARCH ESO DET DIT": 5}) == ["eso.fits"]


def test_empty_folder(tmp_path):
    index = ImageIndex(tmp_path)
    assert len(index) == 0
    assert index.files() == []
    assert len(index.unreadable) == 0
    assert "imagetyp" in index.table.colnames


def test_threads_give_the_same_table(messy, monkeypatch):
    import calstack.catalog.scan as module

    serial = ImageIndex(messy, recursive=True, keywords="*", workers=1, cache=False).table
    monkeypatch.setattr(module, "_PROBE_FILES", 2)
    pooled = ImageIndex(messy, recursive=True, keywords="*", workers=3, cache=False).table
    monkeypatch.setattr(module, "_SLOW_FILE_S", 0.0)  # adaptive: probe says slow -> pool
    adaptive = ImageIndex(messy, recursive=True, keywords="*", cache=False).table
    for table in (pooled, adaptive):
        assert table.colnames == serial.colnames
        for name in serial.colnames:
            assert table[name].tolist() == serial[name].tolist()


# --------------------------------------------------------------------------- filtering
def test_filter_is_case_and_blank_insensitive(messy):
    index = ImageIndex(messy)
    assert index.files(imagetyp="dark") == ["a_dark7.fits", "b_dark7_noise.FIT", "c_dark70.fts",
                                            "e_dark300.fits.gz", "g_mef.fits"]
    assert index.files(imagetyp=" DARK ") == index.files(imagetyp="dark")
    assert index.files(imagetyp="bias frame") == ["d_bias.fits"]
    darks = index.filter(imagetyp="dark")
    assert isinstance(darks, ImageIndex)
    assert len(darks) == 6
    assert column(darks, "hdu") == [0, 0, 0, 0, 1, 2]


def test_filter_numbers_with_tolerance(messy):
    index = ImageIndex(messy)
    assert index.files(exptime=7) == ["a_dark7.fits", "b_dark7_noise.FIT"]
    assert index.files(exptime=7.0000001) == ["a_dark7.fits", "b_dark7_noise.FIT"]
    # exposure times as cameras record them: within max(0.1 %, 10 ms)
    assert index.files(exptime=7.01) == ["a_dark7.fits", "b_dark7_noise.FIT"]
    assert index.files(exptime=7.011) == []
    assert index.files(exptime="70") == ["c_dark70.fts", "g_mef.fits"]
    assert column(index.filter(exptime=70), "extname") == [None, "CCD1"]
    assert index.files(exptime=np.float32(300)) == ["e_dark300.fits.gz"]
    assert index.files(imagetyp="dark", exptime=[7, 300]) == [
        "a_dark7.fits", "b_dark7_noise.FIT", "e_dark300.fits.gz"]


def test_filter_names_presence_and_missing(messy):
    index = ImageIndex(messy)
    assert index.files(ccd_temp=-20) == ["c_dark70.fts"]
    assert index.files({"CCD-TEMP": -20.0}) == ["c_dark70.fts"]
    assert index.files({"imagetyp": "dark"}, exptime=70, include_path=True) == [
        str(messy / "c_dark70.fts"), str(messy / "g_mef.fits")]
    assert index.files(gain="*") == ["b_dark7_noise.FIT"]
    assert index.files(filter="r") == ["a_dark7.fits", "f_flat.fits.fz"]
    # a missing keyword never matches, unreadable files never match
    assert index.files(filter="*", imagetyp="dark") == ["a_dark7.fits"]
    assert "h_notfits.fits" not in index.files()
    assert len(index.filter()) == 8
    assert index.filter(imagetyp="flat").filter(filter="R").files() == ["f_flat.fits.fz"]


def test_unknown_keyword_suggests_a_column(messy):
    index = ImageIndex(messy)
    with pytest.raises(UnknownOptionError, match="did you mean 'exptime'") as info:
        index.files(exptme=7)
    assert isinstance(info.value, TypeError)
    assert "keywords=" in str(info.value)
    with pytest.raises(UnknownOptionError, match="did you mean 'imagetyp'"):
        index.filter({"IMAGETYPE": "dark"})


def test_bad_criteria_and_options(messy):
    index = ImageIndex(messy)
    with pytest.raises(OptionError, match="imagetyp"):
        index.files(imagetyp=None)
    with pytest.raises(OptionError, match="criterion for 'exptime'"):
        index.files(exptime={"a": 1})
    with pytest.raises(OptionError, match="criteria must be a dict"):
        index.filter(["imagetyp", "dark"])
    with pytest.raises(UnknownOptionError, match="did you mean 'recursive'"):
        ImageIndex(messy, recursiv=True)
    with pytest.raises(OptionError, match="workers must be a positive int"):
        ImageIndex(messy, workers=0)
    with pytest.raises(OptionError, match="keywords"):
        ImageIndex(messy, keywords=[1, 2])
    with pytest.raises(OptionError, match="clashes with the index's own column 'path'"):
        ImageIndex(messy, keywords=["PATH"])
    with pytest.raises(OptionError, match="does not exist"):
        ImageIndex(messy / "nope")
    with pytest.raises(OptionError, match="recursive must be True or False"):
        ImageIndex(messy, recursive="yes")


def test_repr(messy):
    text = repr(ImageIndex(messy))
    assert text.startswith("<ImageIndex: 10 rows from 9 files, 2 unreadable;")


# --------------------------------------------------------------------------- ccdproc parity
def test_same_files_as_ccdproc(tmp_path):
    ccdproc = pytest.importorskip("ccdproc")
    for i, (imagetyp, exptime) in enumerate([("DARK", 70.0), ("dark", 70.0), ("DARK", 7.0),
                                             ("BIAS", 0.0), ("FLAT", 70.0), ("Dark", 70.0)]):
        frame(tmp_path / f"f{i}.fits", IMAGETYP=imagetyp, EXPTIME=exptime, FILTER="V")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ccdproc/astropy may warn about the collection
        collection = ccdproc.ImageFileCollection(str(tmp_path))
        theirs = list(collection.files_filtered(imagetyp="dark", exptime=70))
        their_paths = list(collection.files_filtered(imagetyp="dark", exptime=70,
                                                     include_path=True))
    index = ImageIndex(tmp_path)
    assert sorted(theirs) == ["f0.fits", "f1.fits", "f5.fits"]
    assert index.files(imagetyp="dark", exptime=70) == sorted(theirs)
    assert index.files(imagetyp="dark", exptime=70, include_path=True) == sorted(their_paths)
    assert isinstance(index.summary, Table)


def test_a_column_takes_the_narrowest_type_and_masks_missing_cells():
    from calstack.catalog.frametable import frame_column

    assert frame_column([1, 2]).dtype == np.int64
    assert frame_column([1, 2.5]).dtype == np.float64
    assert frame_column([True, False]).dtype == bool
    assert frame_column([1, "a"]).tolist() == ["1", "a"]  # mixed types: text
    assert frame_column([2**70, 1]).dtype == np.float64  # beyond int64
    cells = frame_column([None, 3])
    assert cells.dtype == np.int64
    assert cells.mask.tolist() == [True, False]
    assert cells[1] == 3
    assert frame_column([None, None]).mask.all()
