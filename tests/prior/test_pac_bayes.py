"""The PAC-Bayes bound of eq. (4)."""

import math

import pytest

from tfflat.errors import UserError
from tfflat.prior.bounds import pac_bayes_bound


def test_closed_form():
    # (ln 1/P + ln 1/δ) / m
    assert pac_bayes_bound(-100.0, 500, 0.05) == pytest.approx((100 + math.log(20)) / 500)
    assert pac_bayes_bound(0.0, 10, 0.5) == pytest.approx(math.log(2) / 10)
    assert pac_bayes_bound(-1e4, 100) > 1          # vacuous values are returned as they are
    assert pac_bayes_bound(-math.inf, 100) == math.inf


def test_monotone():
    assert pac_bayes_bound(-50.0, 500) < pac_bayes_bound(-60.0, 500)
    assert pac_bayes_bound(-50.0, 1000) < pac_bayes_bound(-50.0, 500)
    assert pac_bayes_bound(-50.0, 500, 0.1) < pac_bayes_bound(-50.0, 500, 0.01)


@pytest.mark.parametrize("args", [(-1.0, 0, 0.05), (-1.0, 10, 0.0), (-1.0, 10, 1.0), (2.0, 10, 0.05),
                                  (math.nan, 10, 0.05)])
def test_bad_input(args):
    with pytest.raises(UserError):
        pac_bayes_bound(*args)
