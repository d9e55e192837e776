"""The direct prior sampler: keys, the weight stream, the compiled networks, frequencies, resume, the CSV."""

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


# ---- the weight stream -----------------------------------------------------------------------

def test_stream_is_standard_normal_and_uncorrelated():
    z = stream.reference_normals(seed=3, start=0, count=100, per_sample=2001).ravel()
    assert abs(z.mean()) < 4 / np.sqrt(len(z))
    assert abs(z.var() - 1) < 5 * np.sqrt(2 / len(z))
    assert stats.kstest(z, "norm").pvalue > 1e-3
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 4 / np.sqrt(len(z))
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
    ref = K.pack(stream.reference_functions(11, 1000, block, bits, widths))
    # float32 vs float64: only a logit within ~1e-6 of 0 could flip a bit
    assert (got == ref).all(axis=1).mean() >= 0.98


def test_compiled_normals_match_reference():
    net = evaluator.network(7, (40, 40), 1.0, 0.1, batch=8)
    got = net.normals(2, 5)
    ref = stream.reference_normals(2, 5, 8, stream.normals_per_sample(7, (40, 40)))
    np.testing.assert_allclose(got, ref, atol=2e-5, rtol=1e-5)


def test_sample_keys_distinct_and_halves_independent():
    k = stream.sample_keys(0, 0, 200000)
    assert len(np.unique(k)) == len(k)
    lo, hi = (k & np.uint64(0xFFFFFFFF)).astype(np.float64), (k >> np.uint64(32)).astype(np.float64)
    assert abs(np.corrcoef(lo, hi)[0, 1]) < 0.01
    # two samples whose keys share the low half (~5 such pairs per 2·10⁵) still get unrelated normals
    lo = k & np.uint64(0xFFFFFFFF)
    order = np.argsort(lo, kind="stable")
    same = np.flatnonzero(lo[order][1:] == lo[order][:-1])
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
    resumed = sampling.sample(3000, 7, seed=1, state_dir=tmp_path, chunk=1024, threads=1)
    assert np.array_equal(resumed.keys, whole.keys) and np.array_equal(resumed.counts, whole.counts)
    assert resumed.samples == 3000 and resumed.seconds > 0
    other = sampling.sample(3000, 7, seed=1, chunk=768, batch=256)          # the stream ignores batching
    assert np.array_equal(other.keys, whole.keys) and np.array_equal(other.counts, whole.counts)
    with pytest.raises(UserError, match="other settings"):
        sampling.sample(3000, 7, seed=2, state_dir=tmp_path, chunk=1024)


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
