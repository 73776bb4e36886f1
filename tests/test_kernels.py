"""The numba kernel against its pure-NumPy twin, and the twin against astropy's sigma_clip."""

import warnings
from dataclasses import replace

import numpy as np
import pytest
from astropy.stats import sigma_clip
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from calstack.kernels.registry import ALGORITHMS, NO_REJECTION
from calstack.kernels.sorted_ranges import sorting_network
from calstack.kernels.twin import combine_reference
from calstack.options import REJECTIONS, CombineOptions
from calstack.stacking.kernel_call import KernelCall, grow_marks


def run_kernel(stack, options, out_dtype=np.float64, **call_args):
    stack = np.ascontiguousarray(stack)
    n_pix = stack.shape[1]
    data = np.empty(n_pix, out_dtype)
    unc = np.empty(n_pix, out_dtype)
    count = np.empty(n_pix, np.int16)
    counts = KernelCall(options, len(stack), **call_args).combine_tile(stack, data, unc, count)
    return data, unc, count, counts.rejected


def assert_matches_reference(stack, options, weights=None, post_scale=None):
    stack = np.ascontiguousarray(stack)
    n_pix = stack.shape[1]
    data, unc = np.empty(n_pix), np.empty(n_pix)
    count = np.empty(n_pix, np.int16)
    per_pixel = weights is not None and np.ndim(weights) == 2
    call = KernelCall(options, len(stack), frame_weights=None if per_pixel else weights,
                      per_pixel_weights=per_pixel, post_scale=post_scale)
    rejected, frame_rejected = call.combine_tile(stack, data, unc, count,
                                                 weights if per_pixel else None)
    ref_data, ref_unc, ref_count, ref_frames = combine_reference(
        stack, options, weights=weights, post_scale=post_scale)
    # post-scaled values are held in the stack's dtype
    rtol = 1e-6 if post_scale is not None and stack.dtype == np.float32 else 1e-10
    atol = rtol
    if post_scale is not None and stack.dtype == np.float32:
        # each post-scaled value is rounded to float32, an error of up to eps/2 of its size that
        # does not shrink where a sum cancels to far less than the values summed
        scaled = np.abs(np.where(np.isfinite(stack), stack, 0.0) * np.asarray(post_scale)[:, None])
        size = scaled.sum(axis=0) if options.method == "sum" else scaled.max(axis=0)
        atol = np.maximum(rtol, rtol * size)
    np.testing.assert_array_equal(count, ref_count)
    close = np.isclose(data, ref_data, rtol=rtol, atol=atol, equal_nan=True)
    assert close.all(), (data[~close], ref_data[~close])
    np.testing.assert_allclose(unc, ref_unc, rtol=max(rtol, 1e-9), atol=rtol * 100, equal_nan=True)
    np.testing.assert_array_equal(frame_rejected, ref_frames)
    assert rejected == np.isfinite(stack).sum() - count.sum() == ref_frames.sum()


options_strategy = st.builds(
    CombineOptions,
    method=st.sampled_from(["average", "median", "sum"]),
    rejection=st.sampled_from([None, *ALGORITHMS]),
    pclip=st.sampled_from([-0.5, 0.3, -2.0, 1.0]),
    gain=st.sampled_from([0.5, 2.0]),
    read_noise=st.sampled_from([0.0, 1.0, 5.0]),
    sense_noise=st.sampled_from([0.0, 0.05]),
    esd_max=st.sampled_from([0.3, 0.5, 2.0]),
    esd_alpha=st.sampled_from([0.05, 0.3]),
    ccdproc_semantics=st.booleans(),
    sigma=st.sampled_from([0.5, 1.0, 1.5, 2.0, 3.0, 5.0]),
    sigma_lower=st.sampled_from([None, 0.0, 1.0, 2.5]),
    sigma_upper=st.sampled_from([None, 1.0, 4.0]),
    cenfunc=st.sampled_from(["median", "mean"]),
    stdfunc=st.sampled_from(["mad_std", "std"]),
    maxiters=st.sampled_from([1, 2, 5, None]),
    min_clip=st.sampled_from([None, -2.0, 0.0]),
    max_clip=st.sampled_from([None, 2.0, 10.0]),
    nlow=st.integers(0, 2),
    nhigh=st.integers(0, 2),
    nkeep=st.sampled_from([0, 1, 2, -1]),
    quantum=st.sampled_from([0.0, 0.0, 0.5]),
)


@st.composite
def stacks(draw):
    n_frames = draw(st.one_of(st.integers(1, 4), st.integers(5, 30), st.sampled_from([100, 200])))
    n_pix = draw(st.integers(1, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["ties", "normal", "outliers"]))
    if kind == "ties":  # few distinct, exactly representable values: many ties
        stack = rng.integers(-3, 4, size=(n_frames, n_pix)) * 0.5
    else:
        stack = rng.normal(size=(n_frames, n_pix))
        if kind == "outliers":
            hits = rng.random(stack.shape) < 0.1
            stack[hits] += rng.choice([-50.0, 80.0], size=hits.sum())
    missing = rng.random(stack.shape) < draw(st.sampled_from([0.0, 0.2, 0.6, 1.0]))
    stack[missing] = rng.choice([np.nan, np.inf, -np.inf], size=missing.sum())
    return stack.astype(draw(st.sampled_from([np.float32, np.float64])))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack=stacks(), options=options_strategy)
def test_kernel_matches_reference(stack, options):
    assert_matches_reference(stack, options)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack=stacks(), options=options_strategy, data=st.data())
def test_weights_and_post_scale_match_reference(stack, options, data):
    """Weights of rejected or missing values do not count (unlike ccdproc, issue 893)."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n = len(stack)
    kind = data.draw(st.sampled_from(["frame", "pixel", "none"]))
    weights = {"frame": rng.uniform(0.1, 3.0, n), "pixel": rng.uniform(0.1, 3.0, stack.shape),
               "none": None}[kind]
    post_scale = data.draw(st.sampled_from([None, rng.uniform(0.5, 2.0, n)]))
    if options.method == "median":
        weights = None
    assert_matches_reference(stack, options, weights=weights, post_scale=post_scale)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack=stacks(), options=options_strategy, data=st.data(),
       rejection=st.sampled_from(["ccdclip", "avsigclip", "sigclip"]))
def test_noise_of_scaled_frames_matches_reference(stack, options, data, rejection):
    """ccdclip's noise model and avsigclip's Poisson level per frame, at the unscaled level
    (frames of distinct values: of tied values of differently scaled frames, the kernel judges
    by every frame holding the value)."""
    finite = [column[np.isfinite(column)] for column in stack.T]
    assume(all(len(np.unique(column)) == len(column) for column in finite))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n = len(stack)
    options = replace(options, rejection=rejection, frame_scale=tuple(rng.uniform(0.3, 3.0, n)),
                      frame_zero=data.draw(st.sampled_from([None, tuple(rng.normal(0, 2, n))])))
    assert_matches_reference(stack, options)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(options=options_strategy, data=st.data())
def test_lines_and_grow_match_reference(options, data):
    """Tiles of several lines (N, lines, width), in the kernel as in the twin: avsigclip's sigma
    per line whatever the block boundaries (a line of quiet pixels and a line of noisy ones clip
    differently), and grow's discs, also where the tile holds a halo of rows around the rows
    combined."""
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n = data.draw(st.integers(1, 12))
    lines, width = data.draw(st.integers(1, 6)), data.draw(st.sampled_from([1, 7, 100, 300]))
    noise = rng.choice([1.0, 30.0], size=(1, lines, 1))
    stack = rng.normal(50.0, noise, (n, lines, width))
    hits = rng.random(stack.shape) < 0.05
    stack[hits] += 400.0
    stack[rng.random(stack.shape) < data.draw(st.sampled_from([0.0, 0.3]))] = np.nan
    grow = data.draw(st.sampled_from([0.0, 1.0, 1.5, 2.0]))
    rejection = data.draw(st.sampled_from(["avsigclip", options.rejection]))
    options = replace(options, rejection=rejection or "avsigclip", grow=grow)
    call = KernelCall(options, n)
    above = min(call.halo, data.draw(st.integers(0, lines - 1)))
    below = min(call.halo, lines - above - 1)
    rows = slice(above, lines - below)
    size = (lines - above - below) * width
    data_, unc, count = np.empty(size), np.empty(size), np.empty(size, np.int16)
    frame_rejected = call.combine_tile(stack.copy(), data_, unc, count, above=above).frame_rejected
    ref_data, _, ref_count, _ = combine_reference(stack, options)
    np.testing.assert_array_equal(count, ref_count[rows].ravel())
    np.testing.assert_allclose(data_, ref_data[rows].ravel(), rtol=1e-10, atol=1e-10,
                               equal_nan=True)
    if not above and not below:
        np.testing.assert_array_equal(frame_rejected, combine_reference(stack, options)[3])


def test_grow_counts_what_thresholds_rejected_where_nkeep_keeps_the_first_combine():
    """Where every value of a pixel is grown over and nkeep keeps its first combine, the values
    the thresholds rejected there count as rejected too (they once did not)."""
    rng = np.random.default_rng(0)
    stack = rng.normal(50.0, rng.choice([1.0, 30.0], size=(1, 1, 1)), (3, 1, 100))
    stack[rng.random(stack.shape) < 0.05] += 400.0
    options = CombineOptions(rejection="avsigclip", sigma=0.5, min_clip=-2.0, grow=1.0,
                             gain=0.5, read_noise=0.0)
    data, unc, count = np.empty(100), np.empty(100), np.empty(100, np.int16)
    counts = KernelCall(options, 3).combine_tile(stack.copy(), data, unc, count)
    ref_data, _, ref_count, ref_frames = combine_reference(stack, options)
    assert (stack < -2.0).sum() > 0
    np.testing.assert_array_equal(count, ref_count.ravel())
    np.testing.assert_allclose(data, ref_data.ravel(), rtol=1e-10, equal_nan=True)
    np.testing.assert_array_equal(counts.frame_rejected, ref_frames)
    assert counts.frame_rejected.tolist() == [39, 29, 56]


@pytest.mark.parametrize("rejection", ["sigma_clip", "esd", "avsigclip"])
def test_a_tile_of_more_blocks_than_groups_matches_reference(rejection):
    """67 blocks of 256 pixels among the kernel's 64 groups (consecutive runs of one or two
    blocks): every pixel is combined, as the twin combines it; more outliers in the first rows
    than in the last, so that the groups' work differs."""
    rng = np.random.default_rng(7)
    stack = rng.normal(100.0, 3.0, (6, 130, 132))
    stack[:2, :40] += rng.normal(0.0, 60.0, (2, 40, 132))
    stack[3, 100, 5] = np.nan
    options = CombineOptions(rejection=rejection, sigma_lower=3.0, sigma_upper=3.0)
    assert_matches_reference(stack.reshape(6, -1), options)


def test_grow_marks_a_disc():
    """grow's marks are IRAF's disc, dx**2 + dy**2 <= grow**2: 5 pixels at 1, 9 at 1.5, 13 at
    2 (scipy.ndimage's binary dilation with that structure)."""
    marks = np.zeros((1, 9, 9), bool)
    marks[0, 4, 4] = True
    assert [int(grow_marks(marks, r).sum()) for r in (0.5, 1.0, 1.5, 2.0, 2.3)] == [1, 5, 9, 13, 21]
    edge = np.zeros((1, 3, 3), bool)
    edge[0, 0, 0] = True
    assert grow_marks(edge, 1.0)[0].tolist() == [[True, True, False], [True, False, False],
                                                  [False, False, False]]


def test_masked_weights_do_not_count():
    stack = np.array([[1.0], [np.nan], [3.0], [100.0]])
    data, _, count, _ = run_kernel(stack, CombineOptions(max_clip=50), frame_weights=[1, 5, 3, 9])
    assert count[0] == 2
    assert data[0] == pytest.approx((1 * 1 + 3 * 3) / 4)


def test_ties_at_the_extrema_reject_by_frame_order():
    """Equal values: nlow drops the lowest frame numbers, nhigh the highest (a stable sort)."""
    stack = np.array([[2.0], [2.0], [2.0], [2.0]])
    call = KernelCall(CombineOptions(nlow=1, nhigh=2), 4, frame_weights=[1.0, 10.0, 100.0, 1000.0])
    data, unc, count = np.empty(1), np.empty(1), np.empty(1, np.int16)
    counts = call.combine_tile(stack, data, unc, count)
    assert count[0] == 1
    assert counts.frame_rejected.tolist() == [1, 0, 1, 1]


def test_esd_ties_reject_by_frame_order():
    """Of three equal outliers ESD removes two: at the high end the last two frames, at the low
    end the first two, in the kernel and in the reference (Hypothesis once found them apart)."""
    rng = np.random.default_rng(0)
    column = np.round(rng.normal(10, 1, 20), 1)
    column[[3, 10, 19]] = 100.0
    stack = np.stack([column, -column], axis=1)  # the outliers high in pixel 0, low in pixel 1
    options = CombineOptions(rejection="esd", esd_max=2)
    data, unc, count = np.empty(2), np.empty(2), np.empty(2, np.int16)
    counts = KernelCall(options, 20).combine_tile(np.ascontiguousarray(stack), data, unc, count)
    expected = np.zeros(20, int)
    expected[[10, 19]] += 1  # pixel 0
    expected[[3, 10]] += 1  # pixel 1
    assert count.tolist() == [18, 18]
    assert counts.frame_rejected.tolist() == expected.tolist()
    assert combine_reference(stack, options)[3].tolist() == expected.tolist()


@pytest.mark.parametrize("rejection", list(ALGORITHMS))
def test_every_algorithm_rejects_an_obvious_cosmic_ray(rejection):
    """Only the 5000 goes, and only from the last frame, in the kernel and in its twin: the ray
    in the first pixel of a line of 20 pixels of the same quiet values (avsigclip fits its sigma
    over the line; sigclip's std of a pixel includes the ray, so that 8 frames could not reject
    it at 3 sigma: at most (N - 1) / sqrt(N))."""
    quiet = np.array([100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 99.8, 100.3, 99.6, 100.4, 99.9,
                      100.1])  # 12 frames: a std of 11 quiet values and a ray can reject it
    stack = np.repeat(quiet[:, None], 20, axis=1)
    stack[11, 0] = 5000.0
    options = CombineOptions(rejection=rejection, sigma=3, gain=1.0, read_noise=1.0)
    data, _, count, _ = run_kernel(stack, options)
    assert count.tolist() == [11] + [12] * 19
    assert data[0] == pytest.approx(np.mean(quiet[:11]), rel=1e-12)
    expected = np.zeros(stack.shape, bool)
    expected[11, 0] = True
    twin = ALGORITHMS[rejection].reference
    rejected = twin(stack[:, None, :], options)[:, 0] if ALGORITHMS[rejection].lines else twin(
        stack, options)
    np.testing.assert_array_equal(rejected, expected)


def test_the_registry_is_the_kernels_and_the_options():
    """Every algorithm has its own kernel code, and the options allow exactly the registry's
    (and 'auto', which picks one of them per combine)."""
    codes = [a.code for a in ALGORITHMS.values()]
    assert len(set(codes)) == len(codes)
    assert NO_REJECTION not in codes
    assert REJECTIONS == (None, *ALGORITHMS, "auto")
    for name, algorithm in ALGORITHMS.items():
        assert algorithm.name == name
        options = CombineOptions(rejection=name, gain=1.0, read_noise=0.0)
        assert options.kernel_params(5).rejection == algorithm.code
        assert set(algorithm.options) <= set(CombineOptions.__dataclass_fields__)


def test_ccdclip_uses_the_noise_model():
    """With gain 1 and no read noise, sigma at level 10000 is 100: 10300 stays, 10400 goes."""
    base = np.full(9, 10000.0)
    for outlier, kept in ((10290.0, 10), (10310.0, 9)):
        stack = np.append(base, outlier)[:, None]
        options = CombineOptions(rejection="ccdclip", sigma=3, gain=1.0, read_noise=0.0)
        _, _, count, _ = run_kernel(stack, options)
        assert count[0] == kept


def test_esd_finds_several_outliers_of_a_normal_sample():
    rng = np.random.default_rng(1)
    stack = rng.normal(0, 1, size=(40, 1))
    stack[:3, 0] = [9.0, -8.0, 10.0]
    _, _, count, _ = run_kernel(stack, CombineOptions(rejection="esd", esd_max=10))
    assert count[0] == 37


def test_esd_critical_values_are_grubbs_for_the_first_outlier():
    """lambda_1 of the ESD test is Grubbs' two-sided critical value: the published table
    (alpha = 0.05: 2.290 for 10 values, 2.709 for 20, 2.908 for 30)."""
    from calstack.kernels.esd import critical_values

    table = critical_values(30, esd_max=3, alpha=0.05)
    assert table[[10, 20, 30], 1] == pytest.approx([2.290, 2.709, 2.908], abs=1e-3)
    assert np.isinf(table[3, 1])  # three values: the test needs three left, so none is sought


@pytest.mark.parametrize("n_frames", [1, 2, 3])
@pytest.mark.parametrize("method", ["average", "median", "sum"])
def test_small_stacks_exact_values(n_frames, method):
    stack = np.array([[1.0, 5.0, np.nan], [3.0, np.nan, np.nan], [8.0, 7.0, np.nan]])[:n_frames]
    data, unc, count, _ = run_kernel(stack, CombineOptions(method=method))
    first = stack[:, 0]
    expected = {"average": first.mean(), "median": np.median(first), "sum": first.sum()}[method]
    assert data[0] == pytest.approx(expected)
    assert count.tolist() == [n_frames, (n_frames + 1) // 2 if n_frames < 3 else 2, 0][:3]
    assert np.isnan(data[2])
    assert np.isnan(unc[2])
    if n_frames == 1:
        assert unc[0] == 0.0


def test_all_rejected_pixel_is_nan_with_zero_count():
    stack = np.array([[1.0], [2.0], [3.0]])
    data, unc, count, rejected = run_kernel(stack, CombineOptions(min_clip=5.0))
    assert np.isnan(data[0])
    assert np.isnan(unc[0])
    assert count[0] == 0
    assert rejected == 3


def test_extrema_with_missing_values_drops_among_valid_values():
    stack = np.array([[np.nan], [1.0], [2.0], [3.0], [100.0]])
    data, _, count, _ = run_kernel(stack, CombineOptions(nlow=1, nhigh=1))
    assert count[0] == 2
    assert data[0] == 2.5


def test_sigma_clip_rejects_cosmic_ray():
    stack = np.array([[10.0], [10.5], [9.5], [10.2], [9.8], [500.0]])
    data, _, count, _ = run_kernel(stack, CombineOptions(rejection="sigma_clip", sigma=5))
    assert count[0] == 5
    assert data[0] == pytest.approx(10.0)


@settings(max_examples=60, deadline=None)
@given(stack=stacks(), sigma_lower=st.sampled_from([1.0, 2.0, 3.0]),
       sigma_upper=st.sampled_from([1.0, 2.5]), cenfunc=st.sampled_from(["median", "mean"]),
       stdfunc=st.sampled_from(["mad_std", "std"]), maxiters=st.sampled_from([1, 3, None]))
def test_sigma_clip_matches_astropy(stack, sigma_lower, sigma_upper, cenfunc, stdfunc, maxiters):
    stack = stack.astype(np.float64)
    options = CombineOptions(rejection="sigma_clip", sigma_lower=sigma_lower,
                             sigma_upper=sigma_upper, cenfunc=cenfunc, stdfunc=stdfunc,
                             maxiters=maxiters, nkeep=0)
    _, _, count, _ = run_kernel(stack, options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clipped = sigma_clip(stack, sigma_lower=sigma_lower, sigma_upper=sigma_upper, axis=0,
                             cenfunc=cenfunc, stdfunc=stdfunc,
                             maxiters=maxiters if maxiters is not None else None, masked=True)
    np.testing.assert_array_equal(count, (~clipped.mask).sum(axis=0))


def test_float32_output_close_to_float64():
    rng = np.random.default_rng(3)
    stack = rng.normal(1000, 10, size=(9, 500)).astype(np.float32)
    options = CombineOptions(rejection="sigma_clip", sigma=2)
    d64, _, c64, _ = run_kernel(stack, options)
    d32, _, c32, _ = run_kernel(stack, options, out_dtype=np.float32)
    np.testing.assert_array_equal(c32, c64)
    np.testing.assert_allclose(d32, d64, rtol=1e-7)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 10, 13, 31, 64, 100, 200])
def test_sorting_network_sorts(n):
    rng = np.random.default_rng(n)
    pairs = sorting_network(n)
    for _ in range(20):
        values = rng.integers(0, 4, size=n).astype(float)  # ties
        values[rng.random(n) < 0.2] = np.inf
        for i, j in pairs:
            values[i], values[j] = min(values[i], values[j]), max(values[i], values[j])
        assert (np.diff(values[np.isfinite(values)]) >= 0).all()
        assert np.all(
            np.sort(values) == values)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), n=st.integers(1, 40), m=st.integers(1, 256),
       dtype=st.sampled_from([np.float32, np.float64]), ties=st.booleans(),
       same_range=st.booleans())
def test_mad_of_sorted_ranges_is_the_median_of_sorted_deviations(data, n, m, dtype, ties,
                                                                  same_range):
    """``mad`` (merging the two runs of deviations where every column keeps the same rows,
    sorting them otherwise) picks exactly the values NumPy's sorted deviations give."""
    from calstack.kernels.sorted_ranges import mad, median_of_range

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    values = rng.integers(-3, 4, size=(n, m)) * 0.5 if ties else rng.normal(size=(n, m)) * 1e3
    w = np.sort(values, axis=0).astype(dtype)
    if same_range:
        first = data.draw(st.integers(0, n - 1))
        lo = np.full(m, first)
        hi = np.full(m, data.draw(st.integers(first, n)))
    else:
        lo = rng.integers(0, n, size=m)
        hi = np.minimum(n, lo + rng.integers(0, n + 1, size=m))
    center, out = np.full(m, np.nan), np.full(m, np.nan)
    median_of_range(w, lo, hi, center, m)
    mad(w, lo, hi, center, np.empty((n, m)), sorting_network(n), out, m)
    for q in range(m):
        k = hi[q] - lo[q]
        if k == 0:
            assert np.isnan(out[q])  # left as it was
            continue
        deviations = np.sort(np.abs(w[lo[q]:hi[q], q].astype(np.float64) - center[q]))
        assert out[q] == (deviations[(k - 1) // 2] + deviations[k // 2]) / 2.0
