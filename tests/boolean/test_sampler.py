"""The direct prior sampler: keys, the weight stream, the compiled networks, frequencies, resume, the CSV."""

import math

import numpy as np
import pytest
from scipy import stats

from tfflat.boolean import evaluator, sampling, stream
from tfflat.boolean import table as T
from tfflat.data import boolean_inputs, function_key
from tfflat.data import keys as K
from tfflat.errors import UserError


def independent_functions(bits, samples, seed, widths=(40, 40), sigma_w=1.0, sigma_b=0.1):
    """A plain numpy sampler sharing nothing with tfflat's: numpy's RNG, float64, (input, unit) layout."""
    rng = np.random.default_rng(seed)
    x = boolean_inputs(bits).astype(np.float64)
    dims = [bits, *widths, 1]
    out = []
    for start in range(0, samples, 1000):
        b = min(1000, samples - start)
        h = np.broadcast_to(x, (b,) + x.shape)
        for i, (fi, fo) in enumerate(zip(dims[:-1], dims[1:])):
            w = rng.normal(0.0, sigma_w / np.sqrt(fi), (b, fi, fo))
            h = h @ w + rng.normal(0.0, sigma_b, (b, 1, fo))
            if i < len(dims) - 2:
                h = np.maximum(h, 0.0)
        out.append(h[..., 0] >= 0)
    return np.concatenate(out)


def counts_of(functions):
    keys, counts = T.count_rows(K.pack(functions))
    return dict(zip(K.hex_keys(keys, int(np.log2(functions.shape[1]))), counts))


# ---- keys ------------------------------------------------------------------------------------

@pytest.mark.parametrize("bits", [1, 2, 3, 6, 7, 8])
def test_pack_hex_match_function_key(bits, rng):
    f = rng.integers(0, 2, (20, 2 ** bits))
    f[0], f[1] = 0, 1
    words = K.pack(f)
    assert words.shape == (20, K.n_words(bits)) and words.dtype == np.uint64
    assert K.hex_keys(words, bits) == [function_key(r) for r in f]
    assert np.array_equal(K.unpack(words, bits), f)
    assert np.array_equal(K.parse_keys(K.hex_keys(words, bits), bits), words)
    digits = max(1, 2 ** bits // 4)
    assert K.hex_keys(words[:2], bits) == ["0" * digits, ("f" * digits if bits >= 2 else "3")]


def test_count_rows_and_merge(rng):
    w = rng.integers(0, 3, (500, 2)).astype(np.uint64)
    keys, counts = T.count_rows(w)
    assert counts.sum() == 500
    truth = {}
    for row in map(tuple, w):
        truth[row] = truth.get(row, 0) + 1
    assert dict(zip(map(tuple, keys), counts)) == truth
    k2, c2 = T.merge([T.count_rows(w[:200]), T.count_rows(w[200:])])
    assert dict(zip(map(tuple, k2), c2)) == truth
    assert np.array_equal(k2, keys) and np.array_equal(c2, counts)      # the same byte order as count_rows
    k3, c3 = T.merge([(keys[::-1], counts[::-1]), (w[:7], np.ones(7, np.int64))])   # unsorted tables too
    more = {r: c + sum(tuple(q) == r for q in w[:7]) for r, c in truth.items()}
    assert dict(zip(map(tuple, k3), c3)) == more and c3.sum() == 507


def test_by_count_is_the_stable_sort(rng):
    counts = np.maximum(1, rng.geometric(0.6, 5000) - 1)
    assert np.array_equal(sampling.by_count(counts), np.argsort(-counts, kind="stable"))


# ---- the weight stream -----------------------------------------------------------------------

def _python_normal(seed: int, s: int, j: int) -> float:
    """Normal j of sample s from the docstrings' formulas in plain Python integers (no numpy)."""
    m64, m32 = (1 << 64) - 1, (1 << 32) - 1

    def mix(x, mask, shifts, mults):
        for sh, k in zip(shifts, mults):
            x = ((x ^ (x >> sh)) * k) & mask
        return x ^ (x >> shifts[-1])

    def splitmix(x):
        return mix(x, m64, (30, 27, 31), (0xBF58476D1CE4E5B9, 0x94D049BB133111EB))

    def lowbias(x):
        return mix(x, m32, (16, 15, 15), (0x21F0AAAD, 0x735A2D97))

    key = splitmix(((seed * 0x9E3779B97F4A7C15) & m64) ^ 0x5DEECE66D)
    k = splitmix((key + (s + 1) * 0x9E3779B97F4A7C15) & m64)
    lo, hi = k & m32, k >> 32
    b = lowbias(((lo + j * 0x9E3779B9) & m32) ^ hi)
    c = lowbias((b + hi) & m32)
    r = math.sqrt(-2 * math.log(((b >> 1) + 0.5) * 2.0 ** -31))
    return r * math.sin(math.pi / 2 * (c - (c >> 31 << 32)) * 2.0 ** -31)


def test_stream_definition_is_pinned():
    """The numpy stream equals its definition written out in Python integers, and its values are
    pinned: a change to the stream must come with a new ``stream.RNG`` (it names resumable state)."""
    assert stream.RNG == "splitmix64+weyl32+mix32x2+box-muller-sin"
    ref = stream.reference_normals(0, 0, 3, 2001)
    for s, j in [(0, 1), (0, 2), (1, 1000), (2, 2001)]:
        assert abs(ref[s, j - 1] - _python_normal(0, s, j)) < 1e-12
    np.testing.assert_allclose(ref[0, :4], [1.11257578, 0.19211436, 1.73124318, 0.35805687], atol=1e-8)
    np.testing.assert_allclose(stream.reference_normals(7, 10 ** 8 - 1, 1, 4)[0],
                               [-0.02643123, 1.39181486, -2.19926535, -0.91827676], atol=1e-8)


def test_stream_is_standard_normal_and_uncorrelated():
    z = stream.reference_normals(seed=3, start=0, count=100, per_sample=2001).ravel()
    assert abs(z.mean()) < 4 / np.sqrt(len(z))
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / len(z))
    assert abs(np.mean(z ** 4) - 3) < 5 * np.sqrt(96 / len(z))            # Var(z⁴) = 105 − 9 = 96
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 4 / np.sqrt(len(z))
    assert abs(np.corrcoef(z[:-1] ** 2, z[1:] ** 2)[0, 1]) < 4 / np.sqrt(len(z))
    # samples depend on their index only; different seeds differ
    a = stream.reference_normals(3, 40, 10, 2001)
    assert np.array_equal(a, stream.reference_normals(3, 0, 50, 2001)[40:])
    assert not np.allclose(a, stream.reference_normals(4, 40, 10, 2001))


@pytest.mark.parametrize("bits,widths,batch,block", [(1, (3,), 4, 8), (3, (40, 40), 64, 128),
                                                     (5, (7, 5, 6), 8, 16), (7, (40, 40), 32, 64)])
def test_compiled_networks_equal_reference(bits, widths, batch, block):
    net = evaluator.network(bits, widths, 1.0, 0.1, batch=batch, block=block)
    got = net(11, 1000)
    assert got.shape == (block, K.n_words(bits))
    # the evaluation alone: the compiled stream's float32 normals through the float64 reference;
    # only a logit within float32 rounding of 0 may flip a bit
    z = np.concatenate([net.normals(11, s) for s in range(1000, 1000 + block, batch)])
    f, logits = stream.reference_functions(11, 1000, block, bits, widths, normals=z, logits=True)
    same = (got == K.pack(f)).all(axis=1)
    near_zero = np.abs(logits).min(axis=1) < 1e-5 * np.abs(logits).max(axis=1)
    assert same.mean() >= 0.98 and (same | near_zero).all()
    # and with the float64 stream
    ref = K.pack(stream.reference_functions(11, 1000, block, bits, widths))
    assert (got == ref).all(axis=1).mean() >= 0.98


def test_compiled_normals_match_reference():
    net = evaluator.network(7, (40, 40), 1.0, 0.1, batch=8)
    got = net.normals(2, 5)
    ref = stream.reference_normals(2, 5, 8, stream.normals_per_sample(7, (40, 40)))
    np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-5)


@pytest.mark.parametrize("half", ["low", "high"])
def test_sample_keys_distinct_and_halves_independent(half):
    k = stream.sample_keys(0, 0, 200000)
    assert len(np.unique(k)) == len(k)
    lo, hi = (k & np.uint64(0xFFFFFFFF)).astype(np.float64), (k >> np.uint64(32)).astype(np.float64)
    assert abs(np.corrcoef(lo, hi)[0, 1]) < 0.01
    # two samples whose keys share a half (~5 such pairs per 2·10⁵) still get unrelated normals
    part = k & np.uint64(0xFFFFFFFF) if half == "low" else k >> np.uint64(32)
    order = np.argsort(part, kind="stable")
    same = np.flatnonzero(part[order][1:] == part[order][:-1])
    assert len(same)
    a, b = order[same[0]], order[same[0] + 1]
    za, zb = stream.reference_normals(0, int(a), 1, 2001)[0], stream.reference_normals(0, int(b), 1, 2001)[0]
    assert abs(np.corrcoef(za, zb)[0, 1]) < 4 / np.sqrt(2001)
    assert stats.kstest(za, "norm").pvalue > 1e-3 and stats.kstest(zb, "norm").pvalue > 1e-3


# ---- frequencies agree with an independent sampler ------------------------------------------

def test_frequencies_match_independent_sampler_3_bits():
    n = 30000
    ours = sampling.sample(n, 3, seed=5)
    ref = counts_of(independent_functions(3, n, seed=123))
    mine = dict(zip(ours.hex(), ours.counts))
    frequent = [k for k in set(mine) | set(ref) if mine.get(k, 0) + ref.get(k, 0) >= 40]
    table = np.array([[mine.get(k, 0) for k in frequent], [ref.get(k, 0) for k in frequent]])
    chi2, p, dof, _ = stats.chi2_contingency(table)
    assert dof >= 5 and p > 1e-4, (chi2, dof, p)
    assert ours.hex(2) == ["00", "ff"] or ours.hex(2) == ["ff", "00"]


def test_frequencies_match_independent_sampler_7_bits():
    n = 6000
    ours = sampling.sample(n, 7, seed=9)
    ref = counts_of(independent_functions(7, n, seed=77))
    constant = {"0" * 32, "f" * 32}
    assert set(ours.hex(2)) == constant            # the constant functions are the most frequent
    assert ours.counts.sum() == n
    for key, c in zip(ours.hex(6), ours.counts[:6]):
        r = ref.get(key, 0)
        p = (c + r) / (2 * n)
        z = (c - r) / np.sqrt(2 * n * p * (1 - p))
        assert abs(z) < 4.5, (key, c, r)


# ---- the run: chunks, resume, settings ------------------------------------------------------

def test_resume_gives_the_uninterrupted_table(tmp_path):
    whole = sampling.sample(3000, 7, seed=1, chunk=1024)

    class Stop(Exception):
        pass

    def stop_after_first_chunk(done, total):
        if done > 1024:
            raise Stop

    with pytest.raises(Stop):
        sampling.sample(3000, 7, seed=1, state_dir=tmp_path, chunk=1024, progress=stop_after_first_chunk)
    assert len(list((tmp_path / "chunks").glob("*.npz"))) == 1
    resumed = sampling.sample(3000, 7, seed=1, state_dir=tmp_path, chunk=1024)
    assert np.array_equal(resumed.keys, whole.keys) and np.array_equal(resumed.counts, whole.counts)
    assert resumed.samples == 3000 and resumed.seconds > 0
    other = sampling.sample(3000, 7, seed=1, chunk=768, batch=256)          # the stream ignores batching
    assert np.array_equal(other.keys, whole.keys) and np.array_equal(other.counts, whole.counts)
    with pytest.raises(UserError, match="other settings"):
        sampling.sample(3000, 7, seed=2, state_dir=tmp_path, chunk=1024)


def test_workers_give_the_in_process_table(tmp_path):
    """Worker processes (interrupted, then resumed in this process) give the in-process table."""
    whole = sampling.sample(5000, 7, seed=3, chunk=1024, workers=0)

    class Stop(Exception):
        pass

    def stop_after_three_chunks(done, total):
        if done >= 3 * 1024:
            raise Stop

    with pytest.raises(Stop):
        sampling.sample(5000, 7, seed=3, state_dir=tmp_path, chunk=1024, workers=2, progress=stop_after_three_chunks)
    assert len(list((tmp_path / "chunks").glob("*.npz"))) >= 2
    resumed = sampling.sample(5000, 7, seed=3, state_dir=tmp_path, chunk=1024, workers=0)
    assert np.array_equal(resumed.keys, whole.keys) and np.array_equal(resumed.counts, whole.counts)


def test_worker_failure_is_reported():
    from tfflat.boolean.workers import Pool

    with pytest.raises(RuntimeError, match=r"(?s)sampler worker 1 stopped \(exit 1\).*KeyError: 'bits'"):
        with Pool(1, {"seed": 0}) as pool:
            list(pool.map([(0, 10)]))


def test_table_csv_round_trip(tmp_path):
    t = sampling.sample(2000, 3, seed=0)
    n = T.write_table(tmp_path / "f.csv", t, min_count=2)
    keys, counts, logp = T.read_table(tmp_path / "f.csv")
    assert len(keys) == n == int((t.counts >= 2).sum())
    assert keys == t.hex(n) and np.array_equal(counts, t.counts[:n])
    np.testing.assert_allclose(logp, np.log10(t.counts[:n] / 2000), atol=1e-6)
    assert list(counts) == sorted(counts, reverse=True)


@pytest.mark.parametrize("bits,samples", [(0, 10), (21, 10), (7, -1), (2.5, 10)])
def test_bad_settings(bits, samples):
    with pytest.raises(UserError):
        sampling.sample(samples, bits)


def test_bad_workers():
    with pytest.raises(UserError, match="workers"):
        sampling.sample(10, 3, workers=-1)
