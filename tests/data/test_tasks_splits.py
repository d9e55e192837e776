"""Boolean tasks, function keys and the S / A / E splits."""

import numpy as np
import pytest

from tfflat.data import boolean_inputs, draw_indices, function_key, load_task, make_splits, parse_target
from tfflat.errors import UserError


def test_boolean_inputs_bit_convention():
    x = boolean_inputs(3)
    assert x.shape == (8, 3)
    for k in range(8):
        assert [int(v) for v in x[k]] == [(k >> i) & 1 for i in range(3)]


def test_function_key_convention():
    n = 7
    assert function_key(np.zeros(2 ** n)) == "0" * 32
    assert function_key(np.ones(2 ** n)) == "f" * 32
    f = np.zeros(128, int)
    f[0] = 1                                   # f(x_0) is the least significant bit
    assert function_key(f) == "0" * 31 + "1"
    f = np.zeros(128, int)
    f[127] = 1
    assert function_key(f) == "8" + "0" * 31


@pytest.mark.parametrize("n", [2, 5, 7])
def test_parse_target_roundtrip(n):
    f = np.random.default_rng(n).integers(0, 2, 2 ** n)
    assert np.array_equal(parse_target(function_key(f), n), f)
    assert np.array_equal(parse_target("".join(map(str, f)), n), f)
    r = parse_target("random", n, seed=3)
    assert np.array_equal(r, parse_target("random", n, seed=3)) and r.shape == (2 ** n,)


def test_bad_targets_and_bits():
    with pytest.raises(UserError, match="hex key"):
        parse_target("xyz", 7)
    with pytest.raises(UserError, match="between 1 and 20"):
        load_task("boolean", bits=21)


def test_boolean_task_labels():
    t = load_task("boolean", bits=4, target="0" * 15 + "1")   # only the input 1111 is 1 … as bits f(x_0)…f(x_15)
    s = make_splits(t, 16, 0, 0, seed=0)
    xs, ys = s.x_train, s.y_train
    assert ys.sum() == 1 and np.all(xs[ys == 1][0] == 1)


def test_splits_disjoint_flipped_and_stable(mnist):
    small = make_splits(mnist, 50, 0, 40, seed=3)
    big = make_splits(mnist, 50, 30, 40, seed=3)
    idx = {k: set(v["indices"]) for k, v in big.indices.items()}
    assert not (idx["S"] & idx["A"]) and not (idx["S"] & idx["E"]) and not (idx["A"] & idx["E"])
    assert big.sizes == {"S": 50, "A": 30, "E": 40}
    # S and E do not depend on |A|: one kernel serves a whole attack-size sweep.
    assert small.indices["S"] == big.indices["S"] and small.indices["E"] == big.indices["E"]
    np.testing.assert_array_equal(small.x_test, big.x_test)
    # A's labels are flipped relative to the true labels.
    true = mnist.pools["test"].labels[big.indices["A"]["indices"]]
    np.testing.assert_array_equal(big.y_attack, 1 - true)
    assert make_splits(mnist, 50, 30, 40, seed=4).indices["S"] != big.indices["S"]


def test_too_large_says_how_many(mnist):
    with pytest.raises(UserError, match="only 10000"):
        draw_indices(mnist, 9000, 500, 1000, 0)
    with pytest.raises(UserError, match="≥ 0"):
        draw_indices(mnist, 10, -1, 10, 0)


def test_two_pool_task_draws_test_from_test(data_dir):
    t = load_task("cifar_cats_cars", data_dir)
    ind = draw_indices(t, 20, 10, 30, 0)
    assert ind["S"]["pool"] == ind["A"]["pool"] == "train" and ind["E"]["pool"] == "test"
    with pytest.raises(UserError, match="test split has only 2000"):
        draw_indices(t, 20, 10, 3000, 0)
