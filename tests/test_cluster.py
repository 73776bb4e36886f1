"""The Dask backend: the same masters as the local backend, bit for bit, on a real cluster of
worker processes; many groups as one graph; a worker killed mid-run; what it refuses.

One LocalCluster of two single-threaded worker processes serves the whole module.
"""

import itertools
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest
from astropy.io import fits
from conftest import make_darks, write_frames

import calstack
from calstack.cli import main
from calstack.errors import FileChangedError, FrameError, OptionError
from calstack.options import RECIPE
from calstack.stacking.cluster import MissingDependencyError, connect
from calstack.stacking.combining import prepare

TIMEOUT = 120  # seconds any one cluster call may take (the first loads the kernel on a worker)
SMALL = 8.45e6  # mem_limit: 8 MiB of headroom, the outputs and bands of a few rows


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # for client.run(_slow_down...)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=":0") as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


def within(function, *args, **kwargs):
    """``function(*args, **kwargs)``, failing the test if it runs past :data:`TIMEOUT`."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(TIMEOUT)
    if thread.is_alive():
        pytest.fail(f"{function.__name__} took more than {TIMEOUT} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def held_keys(client, timeout=10.0):
    """Keys the workers still hold once releases have had ``timeout`` s to arrive (they are sent
    asynchronously, when a future is garbage-collected or cancelled)."""
    deadline = time.monotonic() + timeout
    while True:
        held = {key: where for key, where in client.who_has().items() if where}
        if not held or time.monotonic() > deadline:
            return held
        time.sleep(0.05)


def assert_identical(ours, local):
    """Bit-for-bit the same master, header included (but the time of combination)."""
    assert np.array_equal(ours.data, local.data, equal_nan=True)
    assert np.array_equal(ours.uncertainty.array, local.uncertainty.array, equal_nan=True)
    assert np.array_equal(ours.ncombine, local.ncombine)
    assert np.array_equal(ours.mask, local.mask)
    assert np.array_equal(ours.frame_rejected, local.frame_rejected)
    assert ours.rejected_fraction == local.rejected_fraction
    headers = [m.meta.copy() for m in (ours, local)]
    for header in headers:
        del header["CMBDATE"]
    assert headers[0].tostring() == headers[1].tostring()


@pytest.fixture(scope="module")
def darks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("darks")
    frames, _ = make_darks(n=9, shape=(60, 40), seed=3)
    frames[2, 10:20, 5:15] = np.nan  # missing values
    frames[4:, 50:, :] = np.nan  # pixels with 4 values
    frames[:, 58:, 30:] = np.nan  # pixels with none
    return write_frames(folder, frames)


CASES = {
    "recipe": RECIPE,
    "median": dict(method="median", rejection="sigma_clip", sigma=3, maxiters=None),
    "extrema and thresholds": dict(nlow=1, nhigh=2, min_clip=0, max_clip=3000),
    "scale and zero by the median, weights": dict(RECIPE, scale="median", zero="median",
                                                  weights=list(np.linspace(1, 2, 9))),
    "esd in float64": dict(rejection="esd", esd_max=2, dtype="float64"),
    "winsorized, scale to 1": dict(rejection="winsorized_sigma_clip", scale="mean", scale_to=1.0),
}


@pytest.mark.parametrize("options", CASES.values(), ids=CASES.keys())
def test_same_master_as_the_local_backend(client, darks, options):
    local = calstack.combine(darks, mem_limit=SMALL, **options)
    ours = within(calstack.combine, darks, client=client, mem_limit=SMALL, **options)
    assert len(local.plan.tiles) > 1
    assert len(ours.plan.tiles) >= 2 * 2  # a few bands a worker
    assert_identical(ours, local)
    assert ours.rejected_fraction > 0 or options.get("rejection") is None


def test_a_bad_pixel_mask_on_the_cluster_is_the_local_one(client, darks, tmp_path):
    """Each worker reads the mask (at the same path) for its bands: the master, its mask and
    counts are the local ones, the masked pixels missing in every frame."""
    bad = np.zeros((60, 40), np.uint8)
    bad[3:9, 7] = 1
    bad[30, 10:30] = 16
    fits.PrimaryHDU(bad).writeto(tmp_path / "bad.fits")
    local = calstack.combine(darks, mem_limit=SMALL, bad_pixels=tmp_path / "bad.fits", **RECIPE)
    ours = within(calstack.combine, darks, client=client, mem_limit=SMALL,
                  bad_pixels=tmp_path / "bad.fits", **RECIPE)
    assert len(ours.plan.tiles) >= 2 * 2
    assert_identical(ours, local)
    assert np.isnan(ours.data[bad != 0]).all()
    assert (ours.ncombine[bad != 0] == 0).all()
    assert ours.meta["BADPIX"] == "bad.fits"


def test_raw_frames_with_bias_and_dark_from_files(client, tmp_path):
    night = calstack.simulate(tmp_path, preset="night", shape=(40, 36), n_flats=5)
    index = calstack.ImageIndex(tmp_path)
    flats = index.files(imagetyp="flat", filter="R", include_path=True)
    bias = calstack.combine(index.files(imagetyp="bias", include_path=True), method="median")
    dark = calstack.combine(index.files(imagetyp="dark", exptime=30, include_path=True),
                            method="median", bias=bias)
    bias.write(tmp_path / "bias.fits")
    dark.write(tmp_path / "dark.fits")
    options = dict(RECIPE, bias=tmp_path / "bias.fits", dark=tmp_path / "dark.fits",
                   scale="median", scale_to=1.0)
    local = calstack.combine(flats, **options)
    ours = within(calstack.combine, flats, client=client, **options)
    assert_identical(ours, local)
    assert ours.meta["BIASSUB"] == "bias.fits"
    assert len(night.frames) > len(flats)


def test_tile_compressed_and_integer_frames(client, tmp_path):
    frames, _ = make_darks(n=5, shape=(60, 40), seed=6)
    paths = []
    for i, frame in enumerate(frames):
        paths.append(tmp_path / f"dark-{i}.fits.fz")
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(
            frame, compression_type="GZIP_2", quantize_level=0.0)]).writeto(paths[-1])
        paths.append(tmp_path / f"dark-{i}.fits")
        fits.writeto(paths[-1], np.round(frame).clip(0, 60000).astype(np.uint16))  # BZERO
    local = calstack.combine(paths, mem_limit=SMALL, **RECIPE)
    assert_identical(within(calstack.combine, paths, client=client, mem_limit=SMALL, **RECIPE),
                     local)


def test_many_groups_run_as_one_graph(client, tmp_path):
    from calstack import combine_many

    groups = []
    for exptime, seed in ((7.0, 1), (70.0, 2), (300.0, 3)):
        frames, _ = make_darks(n=5, seed=seed, shape=(30, 20), level=exptime)
        groups.append(write_frames(tmp_path, frames, exptime=exptime))
    masters = within(list, combine_many(groups, client, mem_limit=SMALL, **RECIPE))
    assert [m.meta["EXPTIME"] for m in masters] == [7.0, 70.0, 300.0]
    for group, master in zip(groups, masters, strict=True):
        assert_identical(master, calstack.combine(group, mem_limit=SMALL, **RECIPE))
    assert not held_keys(client)  # every band released


def test_masters_of_a_night_on_the_cluster_equal_local(client, tmp_path):
    """`calstack masters --scheduler`: each kind's groups as one graph, bias subtraction too."""
    from calstack.pipeline.night import build_night

    night = calstack.simulate(tmp_path / "night", preset="night", shape=(40, 32), seed=2)
    index = calstack.ImageIndex(night.outdir)
    local = build_night(index, tmp_path / "local", subtract_bias=True, subtract_dark=True,
                        mem_limit=SMALL)
    remote = within(build_night, index, tmp_path / "remote", subtract_bias=True,
                    subtract_dark=True, mem_limit=SMALL, client=client)
    assert [b.path.name for b in remote] == [b.path.name for b in local]
    for a, b in zip(local, remote, strict=True):
        np.testing.assert_array_equal(fits.getdata(a.path), fits.getdata(b.path))
        np.testing.assert_array_equal(fits.getdata(a.path, "NCOMB"), fits.getdata(b.path, "NCOMB"))
        assert a.frame_rejected == b.frame_rejected
    assert fits.getheader(remote[-1].path)["BIASSUB"] == "combined_bias.fit"


def _slow_down(seconds, die_on_call=None):
    """Make this worker's band tasks slower; the ``die_on_call``-th kills its process."""
    from calstack.stacking.backends import dask as backend

    original = getattr(backend._combine_band, "__wrapped__", backend._combine_band)
    calls = itertools.count(1)

    def band(*args):
        if next(calls) == die_on_call:
            os.kill(os.getpid(), signal.SIGKILL)  # as an out-of-memory kill would
        threading.Event().wait(seconds)
        return original(*args)

    band.__wrapped__ = original
    backend._combine_band = band


def _restore():
    from calstack.stacking.backends import dask as backend

    backend._combine_band = getattr(backend._combine_band, "__wrapped__", backend._combine_band)


def test_a_worker_killed_mid_run_costs_nothing(client, darks):
    pids = client.run(os.getpid)
    victim, survivor = sorted(pids)
    client.run(_slow_down, 0.05, workers=[survivor])
    client.run(_slow_down, 0.05, 2, workers=[victim])
    try:
        ours = within(calstack.combine, darks, client=client, mem_limit=SMALL, **RECIPE)
    finally:
        client.run(_restore)
    assert_identical(ours, calstack.combine(darks, mem_limit=SMALL, **RECIPE))
    within(client.wait_for_workers, 2)  # the nanny started a new worker process
    assert pids[victim] not in client.run(os.getpid).values()


def test_workers_that_keep_dying_are_a_cluster_error(client, darks):
    from calstack.stacking.cluster import ClusterError

    scheduler = client.cluster.scheduler  # in this process: lower its tolerance for the test
    allowed, scheduler.allowed_failures = scheduler.allowed_failures, 0
    client.run(_slow_down, 0, 1)  # every worker dies on its first band
    try:
        with pytest.raises(ClusterError, match=r"workers kept dying.*lower mem_limit"):
            within(calstack.combine, darks, client=client, **RECIPE)
    finally:
        scheduler.allowed_failures = allowed
        within(client.wait_for_workers, 2)
        client.run(_restore)
    assert not held_keys(client)


def test_in_memory_frames_and_gzip_are_refused(client, darks, tmp_path):
    frames, _ = make_darks(n=3, shape=(60, 40))
    with pytest.raises(OptionError, match=r"is in memory.*write it to FITS.*without client="):
        calstack.combine(list(frames), client=client)
    with pytest.raises(OptionError, match=r"the bias .* is in memory"):
        calstack.combine(darks, bias=frames[0], client=client)
    with pytest.raises(OptionError, match=r"per-pixel weights.*per frame"):
        calstack.combine(darks, weights=[np.ones((60, 40))] * 9, client=client)
    gz = tmp_path / "dark.fits.gz"
    fits.writeto(gz, frames[0])
    with pytest.raises(FrameError, match=r"dark\.fits\.gz: is gzip-compressed.*gunzip"):
        calstack.combine([*darks, str(gz)][-3:], client=client)


def test_a_file_the_workers_cannot_read_is_named(client, tmp_path):
    from calstack.stacking.dispatch import run

    copies = write_frames(tmp_path, make_darks(n=3)[0])
    with prepare(copies, **RECIPE) as job:
        os.remove(copies[1])
        with pytest.raises(FrameError, match=rf"{copies[1]}: .*every worker must see the files"):
            within(run, job, client=client)
    assert not held_keys(client)  # the bands done were released, the rest cancelled


def test_a_file_replaced_after_the_client_opened_it_is_named_on_the_worker(client, tmp_path):
    """Same shape, other pixels: the workers check the identity the client opened, not just the
    shape, and nothing is combined from the new file."""
    from calstack.stacking.dispatch import run

    copies = write_frames(tmp_path, make_darks(n=3)[0])
    with prepare(copies, **RECIPE) as job:
        replacement = tmp_path / "new.fits"
        fits.writeto(replacement, np.zeros((100, 100), np.float32))  # make_darks' shape
        os.replace(replacement, copies[1])
        with pytest.raises(FileChangedError, match=rf"{copies[1]}: changed since it was "
                           r"indexed.*again \(on Dask worker tcp://[\d.]+:\d+\)$"):
            within(run, job, client=client)
    assert not held_keys(client)


def test_parallel_current_scheduler(client, darks):
    import distributed

    with pytest.raises(OptionError, match=r"found no Dask client.*pass client="):
        calstack.combine(darks, parallel="current-scheduler")
    with distributed.Client(client.scheduler.address):  # the default client, as users make it
        ours = within(calstack.combine, darks, parallel="current-scheduler", **RECIPE)
    assert_identical(ours, calstack.combine(darks, **RECIPE))


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(parallel="cluster"), "parallel='cluster' is not valid; allowed values"),
    (dict(client="tcp://127.0.0.1:8786"), "client= must be a distributed.Client, not str"),
    (dict(client="c", parallel="current-scheduler"), "not both"),
])
def test_bad_client_options(darks, kwargs, message):
    pytest.importorskip("distributed")
    with pytest.raises(OptionError, match=message):
        calstack.combine(darks, **kwargs)


def test_prepare_rejects_unknown_and_backend_options(darks):
    with pytest.raises(TypeError, match="prepare\\(\\): unknown option 'client'"):
        prepare(darks, client=None)
    with pytest.raises(TypeError, match="did you mean 'sigma'"):
        prepare(darks, sigmaa=3)


def test_cli_scheduler_address_and_local_cluster(client, darks, tmp_path):
    folder = os.path.dirname(darks[0])
    args = ["combine", folder, "--imagetyp", "dark", "--sigma-clip", "5", "5", "-q"]
    assert main([*args, "-o", str(tmp_path / "here")]) == 0
    assert within(main, [*args, "-o", str(tmp_path / "remote"),
                         "--scheduler", client.scheduler.address]) == 0
    assert within(main, [*args, "-o", str(tmp_path / "local"), "--scheduler", "local:1"]) == 0
    name = "combined_dark_90.000.fit"
    here = fits.open(tmp_path / "here" / name)
    for other in ("remote", "local"):
        with fits.open(tmp_path / other / name) as there:
            for a, b in zip(here, there, strict=True):
                assert np.array_equal(a.data, b.data, equal_nan=True)
    here.close()


def test_connect_errors_name_the_fix():
    pytest.importorskip("distributed")
    with pytest.raises(OptionError, match="local:N with N >= 1"), connect("local:0"):
        pass
    with (pytest.raises(OptionError, match=r"no Dask scheduler answers there.*dask scheduler"),
          connect("tcp://127.0.0.1:9", timeout="0.5s")):
        pass
    with connect(None) as nothing:
        assert nothing is None


def test_missing_distributed_names_the_extra(darks, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    with pytest.raises(MissingDependencyError, match=r'pip install "calstack\[cluster\]"'):
        calstack.combine(darks, parallel="current-scheduler")
    assert main(["combine", os.path.dirname(darks[0]), "--scheduler", "local:2"]) == 1
    assert 'pip install "calstack[cluster]"' in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("during", ["start", "close"])
@pytest.mark.usefixtures("ctrl_c")
def test_a_signal_while_the_local_cluster_starts_or_stops_waits_for_it(
        darks, tmp_path, monkeypatch, capsys, signum, during):
    """Ctrl-C (or SIGTERM) while ``local:N`` starts its workers or stops them once left a
    half-made cluster and Dask's exit-time traceback: the signal is delivered once the cluster
    is up (or down), so it is closed and the run ends with calstack's one line."""
    import types

    events = []

    class Cluster:
        def __init__(self, **kwargs):
            events.append(("cluster", kwargs["n_workers"]))
            if during == "start":
                signal.raise_signal(signum)  # handled before it returns: while the workers start
            events.append("started")

        def close(self):
            if during == "close":
                signal.raise_signal(signum)
            events.append("cluster closed")

    class Client:
        dashboard_link = "-"

        def __init__(self, cluster, set_as_default):
            assert isinstance(cluster, Cluster)
            assert not set_as_default

        def close(self):
            events.append("client closed")

    fake = types.ModuleType("distributed")
    fake.LocalCluster, fake.Client = Cluster, Client
    monkeypatch.setitem(sys.modules, "distributed", fake)
    before = signal.getsignal(signum)
    from calstack.stacking import combining, dispatch

    def here(jobs, client, **kwargs):  # a fake client runs nothing: combine on this machine
        assert isinstance(client, Client)
        return dispatch.run_many(jobs, client=None, **kwargs)

    monkeypatch.setattr(combining, "run_many", here)
    code = main(["combine", os.path.dirname(darks[0]), "--imagetyp", "dark", "-q",
                 "-o", str(tmp_path / "out"), "--scheduler", "local:2"])
    assert code == 128 + signum
    assert events == [("cluster", 2), "started", "client closed", "cluster closed"]
    err = capsys.readouterr().err.strip().splitlines()
    done = ("no output was completed" if during == "start" else
            f"1 output(s) were completed: {tmp_path / 'out' / 'combined_dark_90.000.fit'}")
    assert err == [(f"calstack combine: interrupted ({signal.Signals(signum).name}); {done}; "
                   "no partial file was left")]
    assert signal.getsignal(signum) == before


def test_calibrate_on_the_cluster_writes_what_a_local_run_writes(client, tmp_path):
    """Each science file a task on the workers (a bad-pixel mask sent once): the same
    outputs, bit for bit, and the same choices, in input order, with --scheduler too; a file
    replaced after it was indexed is named by the worker's error, nothing written for it."""
    from calstack.catalog.index import ImageIndex
    from calstack.errors import FileChangedError
    from calstack.pipeline.calibrate import INDEX_KEYWORDS, calibrate
    from calstack.pipeline.night import build_night

    calstack.simulate(tmp_path / "raw", preset="night", shape=(40, 32), n_lights=2, seed=2)
    build_night(ImageIndex(tmp_path / "raw", cache=False), tmp_path / "masters",
                subtract_bias=True, subtract_dark=True)
    mask = np.zeros((40, 32), np.uint8)
    mask[3, 4] = 1
    fits.writeto(tmp_path / "bad.fits", mask)
    index = ImageIndex(tmp_path / "raw", cache=False, keywords=INDEX_KEYWORDS)
    options = dict(cache=False, bad_pixels=tmp_path / "bad.fits")
    local = calibrate(index, tmp_path / "masters", tmp_path / "here", **options)
    arrived = []
    there = within(calibrate, index, tmp_path / "masters", tmp_path / "there", client=client,
                   on_frame=arrived.append, **options)
    assert [f.source for f in there] == [f.source for f in local]
    assert sorted(f.source for f in arrived) == sorted(f.source for f in local)
    assert len(local) == 4  # 2 lights in each of 2 filters
    for a, b in zip(local, there, strict=True):
        assert b.path.parent == tmp_path / "there"
        assert (a.summary() | {"output": ""}) == (b.summary() | {"output": ""})
        with fits.open(a.path) as x, fits.open(b.path) as y:
            for p, q in zip(x, y, strict=True):
                assert np.array_equal(p.data, q.data, equal_nan=True)
            assert y["MASK"].data[3, 4] & 8
    assert within(main, ["calibrate", str(tmp_path / "raw"), "--masters",
                         str(tmp_path / "masters"), "-o", str(tmp_path / "cli"), "--no-cache",
                         "-q", "--scheduler", client.scheduler.address]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").iterdir()) == sorted(
        p.name for p in (tmp_path / "here").iterdir())
    first = local[0].source
    with fits.open(first) as hdul:
        hdul.writeto(tmp_path / "copy.fits")
    os.replace(tmp_path / "copy.fits", first)
    with pytest.raises(FileChangedError, match=f"{first}: changed since it was indexed"):
        within(calibrate, index, tmp_path / "masters", tmp_path / "again", client=client,
               cache=False)
    assert not (tmp_path / "again" / os.path.basename(first)).exists()
    assert not held_keys(client)
