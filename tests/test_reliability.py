"""Nothing is lost, nothing is half-written, bad bytes give the project's own errors."""

import hashlib
import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from conftest import make_darks, write_frames
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import calstack
from calstack.errors import CalstackError
from calstack.io.fitsheader import read_hdus
from calstack.options import RECIPE


def digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_inputs_are_never_modified(tmp_path):
    frames, _ = make_darks(n=4, seed=1)
    files = write_frames(tmp_path, frames)
    raw = tmp_path / "raw.fits"
    fits.writeto(raw, (frames[0] + 1000).astype(np.uint16))  # BZERO-scaled integers
    before = {f: digest(f) for f in [*files, raw]}
    calstack.combine([*files, raw], **RECIPE).write(tmp_path / "m.fit")
    assert {f: digest(f) for f in before} == before


def test_interrupted_write_leaves_nothing_and_keeps_old_master(tmp_path, monkeypatch):
    frames, _ = make_darks(n=3, seed=2)
    master = calstack.combine(list(frames))
    target = tmp_path / "master.fit"
    target.write_bytes(b"old master")

    def crash(_self, *args, **_kwargs):
        with open(args[0], "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(fits.HDUList, "writeto", crash)
    with pytest.raises(KeyboardInterrupt):
        master.write(target, overwrite=True)
    assert target.read_bytes() == b"old master"
    assert [p.name for p in tmp_path.iterdir()] == ["master.fit"]
    with pytest.raises(KeyboardInterrupt):
        master.write(tmp_path / "new.fit")
    assert [p.name for p in tmp_path.iterdir()] == ["master.fit"]


def test_output_folder_that_cannot_be_made_is_reported_first(tmp_path, capsys):
    from calstack.cli import main

    frames, _ = make_darks(n=3, seed=3)
    write_frames(tmp_path, frames)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    code = main(["combine", str(tmp_path), "--imagetyp", "dark", "-o", str(blocker / "out")])
    assert code == 1
    assert "output folder is not writable" in capsys.readouterr().err


LOW_FD_CHILD = textwrap.dedent(
    """
    import json, resource, sys
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    import calstack
    files = json.loads(sys.argv[1])
    master = calstack.combine(files, method="median", mem_limit="50MB")
    print(json.dumps([float(master.data[0, 0]), int(master.ncombine.min())]))
    """
)


def test_five_hundred_frames_with_64_open_files(tmp_path):
    files = []
    for i in range(500):
        files.append(str(tmp_path / f"f{i:03d}.fits"))
        fits.writeto(files[-1], np.full((8, 8), float(i), np.float32))
    done = subprocess.run([sys.executable, "-c", LOW_FD_CHILD, json.dumps(files)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [249.5, 500]


def _valid_fits():
    buffer = io.BytesIO()
    hdu = fits.PrimaryHDU(np.arange(64, dtype=np.int16).reshape(8, 8))
    hdu.header["IMAGETYP"] = "DARK"
    hdu.header["EXPTIME"] = 9.0
    fits.HDUList([hdu, fits.ImageHDU(np.zeros((4, 4), np.float32), name="MASK")]).writeto(buffer)
    return buffer.getvalue()


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_files_give_own_errors_or_results(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("fuzz")
    good = bytearray(_valid_fits())
    kind = data.draw(st.sampled_from(["flip", "truncate", "card", "insert"]))
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(good) - 1))
            good[i] = data.draw(st.integers(0, 255))
    elif kind == "truncate":
        good = good[: data.draw(st.integers(0, len(good) - 1))]
    elif kind == "card":  # rewrite one header card with junk
        card = data.draw(st.integers(0, 35))
        text = data.draw(st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80))
        good[card * 80 : card * 80 + 80] = text.ljust(80).encode()
    else:
        i = data.draw(st.integers(0, len(good)))
        good[i:i] = data.draw(st.binary(min_size=1, max_size=100))
    path = folder / "fuzzed.fits"
    path.write_bytes(bytes(good))
    out = folder / "master.fit"
    try:
        read_hdus(path)
    except CalstackError:
        pass
    index = calstack.ImageIndex(folder)
    assert len(index.table) >= 1  # listed, readable or not
    try:
        calstack.combine([path, path]).write(out)
    except CalstackError:
        assert not out.exists()
    assert sorted(p.name for p in folder.iterdir()) in (["fuzzed.fits"], ["fuzzed.fits", "master.fit"])


def test_a_card_astropy_verifies_but_cannot_write_is_dropped(tmp_path):
    """Hypothesis found it: a byte 0x80 inserted into a card makes astropy read a keyword
    '\ufffd' that passes ``verify`` but cannot be written as ASCII; the master is written
    without that card, and HISTORY names it."""
    good = bytearray(_valid_fits())
    good[715:715] = b"\x00\x00\x00\x00\x00\x80"
    path = tmp_path / "fuzzed.fits"
    path.write_bytes(bytes(good))
    out = tmp_path / "master.fit"
    calstack.combine([path, path]).write(out)
    header = fits.getheader(out)
    history = str(header["HISTORY"])
    assert "calstack dropped invalid cards of the first frame: " in history
    assert "\\ufffd" in history
    assert header["IMAGETYP"] == "DARK"


KILL_CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    import calstack
    frames = [np.random.default_rng(i).normal(size=(1024, 1024)) for i in range(3)]
    master = calstack.combine(frames)
    print("ready", flush=True)
    while True:
        master.write(sys.argv[1], overwrite=True)
    """
)


@pytest.mark.parametrize("delay", [0.05, 0.2, 0.5])
def test_kill_9_never_leaves_a_partial_master(tmp_path, delay):
    import signal
    import time

    target = tmp_path / "master.fit"
    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, str(target)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    time.sleep(delay)
    child.send_signal(signal.SIGKILL)
    child.wait()
    child.stdout.close()
    if target.exists():  # whatever is under the final name is a complete master
        with fits.open(target) as hdul:
            hdul.verify("exception")
            assert [h.name for h in hdul] == ["PRIMARY", "UNCERT", "MASK", "NCOMB"]
            assert hdul["NCOMB"].data.shape == (1024, 1024)


def test_full_disk_is_a_clear_error_and_keeps_the_old_master(tmp_path, monkeypatch):
    import errno

    master = calstack.combine([np.ones((4, 4)), np.ones((4, 4))])
    target = tmp_path / "master.fit"
    target.write_bytes(b"old master")

    def full(_self, *_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fits.HDUList, "writeto", full)
    with pytest.raises(CalstackError, match=r"master\.fit: cannot be written \(No space left"):
        master.write(target, overwrite=True)
    assert target.read_bytes() == b"old master"
    assert [p.name for p in tmp_path.iterdir()] == ["master.fit"]


def test_frames_with_uncert_mask_and_ncomb_extensions(tmp_path):
    frames, _ = make_darks(n=3, seed=7)
    paths = []
    for i in range(3):
        master = calstack.combine(list(frames + i))
        master.mask[0, 0] = True  # used as a MASK extension by the next combine
        paths.append(master.write(tmp_path / f"m{i}.fit"))
    combined = calstack.combine(paths, method="average")
    expected = np.mean([frames.astype(np.float64).mean(axis=0) + i for i in range(3)], axis=0)
    np.testing.assert_allclose(combined.data[1:], expected[1:], rtol=1e-6)
    assert np.isnan(combined.data[0, 0])
    assert combined.ncombine[0, 0] == 0
