"""PS formulas: the matrix patsy builds equals one built by hand, and bad formulas are one clear error."""

import numpy as np
import pandas as pd
import pytest

from sim.methods.formula import formula_columns, ps_design, split_formula


@pytest.fixture
def data():
    rng = np.random.default_rng(20261206)
    n = 120
    return pd.DataFrame({"age": rng.normal(60, 10, n), "male": rng.integers(0, 2, n),
                         "escc": rng.integers(0, 4, n)})


def test_squares_interactions_and_categories_equal_a_hand_built_matrix(data):
    d = ps_design(data, "treat ~ age + I(age**2) + male:escc + C(escc)")
    escc = data["escc"].to_numpy()
    hand = {"C(escc)[T.1]": escc == 1, "C(escc)[T.2]": escc == 2, "C(escc)[T.3]": escc == 3,
            "age": data["age"], "I(age ** 2)": data["age"] ** 2, "male:escc": data["male"] * escc}
    assert d.names == tuple(hand)
    np.testing.assert_array_equal(d.X, np.column_stack([np.asarray(v, float) for v in hand.values()]))


def test_splines_take_their_knots_from_the_data(data):
    d = ps_design(data, "bs(age, df=4)")
    assert d.X.shape == (len(data), 4)
    shifted = ps_design(data.assign(age=data["age"] + 100), "bs(age, df=4)")
    np.testing.assert_allclose(shifted.X, d.X, atol=1e-12)  # knots move with the data


def test_columns_read_by_a_formula():
    assert formula_columns("t ~ np.log(age) + bs(sins, df=3) + C(escc):male + I(age**2)") == (
        "age", "sins", "escc", "male")
    assert split_formula("~ a + b") == (None, "a + b")
    assert split_formula("treat ~ a") == ("treat", "a")


@pytest.mark.parametrize("formula, words", [
    ("age + nosuch", "column(s) not found: nosuch"),
    ("1", "no terms besides the intercept"),
    ("age ~ male ~ escc", "more than one '~'"),
    ("age +", "cannot be parsed"),
    ("", "non-empty string"),
    ("np.log(male)", "non-finite"),
    ("np.log(age - 100)", "--formula"),
])
def test_bad_formulas_are_one_clear_error(data, formula, words):
    with pytest.raises(ValueError, match=None) as info:
        ps_design(data, formula, key="--formula")
    assert words in str(info.value) and "\n" not in str(info.value)


def test_missing_values_are_an_error_not_dropped_rows(data):
    data.loc[3, "age"] = np.nan
    with pytest.raises(ValueError, match="--formula"):
        ps_design(data, "age + male", key="--formula")
