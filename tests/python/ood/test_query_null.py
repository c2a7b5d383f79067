import numpy as np
import pytest

from pyclams.ood import query_null
from pyclams.ood.conformal import benjamini_hochberg
from pyclams.ood.query_null import affine_map, query_aligned_pvalues, query_shift


def test_affine_map_matches_median_and_upper_quantile():
    rng = np.random.default_rng(0)
    ref = rng.normal(-20, 2, 5000)
    query = rng.normal(-30, 1, 5000)
    shift, scale = affine_map(query, ref)
    assert scale == pytest.approx(2.0, rel=0.05)
    np.testing.assert_allclose(np.median(shift + scale * query), np.median(ref), atol=0.1)


def test_scale_is_bounded_for_a_degenerate_class():
    shift, scale = affine_map(np.full(50, -3.0), np.linspace(-5, 5, 100))
    assert scale == 1.0 and np.isfinite(shift)
    _, scale = affine_map(np.linspace(0, 1e-6, 50), np.linspace(-5, 5, 100))
    assert scale == 4.0


def test_known_cells_of_a_shifted_query_get_uniform_pvalues():
    rng = np.random.default_rng(1)
    ref_pred = np.repeat([0, 1], 2000)
    ref = np.where(ref_pred == 0, -20, -35) - rng.gumbel(size=4000)
    pred = rng.integers(0, 2, 4000)
    query = np.where(pred == 0, -27, -39) - 0.7 * rng.gumbel(size=4000)
    p, maps = query_aligned_pvalues(query, pred, ref, ref_pred)
    # uniform: about 5% below 0.05, and the lower tail is not inflated
    assert abs(np.mean(p <= 0.05) - 0.05) < 0.02
    assert abs(np.mean(p <= 0.01) - 0.01) < 0.01
    assert {m.source for m in maps.values()} == {"class"}


def test_small_classes_borrow_the_overall_map_and_reference():
    rng = np.random.default_rng(2)
    ref, ref_pred = rng.normal(0, 1, 500), np.zeros(500, np.int64)
    pred = np.r_[np.zeros(200, np.int64), np.ones(10, np.int64)]
    query = rng.normal(-5, 1, 210)
    p, maps = query_aligned_pvalues(query, pred, ref, ref_pred)
    assert maps[1].source == "all cells" and maps[1].n_reference == 500
    assert maps[0].source == "class" and maps[0].n_query == 200
    assert np.all((p > 0) & (p <= 1))
    assert query_aligned_pvalues(np.zeros(0), np.zeros(0), ref, ref_pred)[0].size == 0


def test_query_shift_is_the_reference_share_below_the_query_median():
    ref = np.arange(100.0)
    assert query_shift(np.array([49.5]), ref) == 0.5
    assert query_shift(np.array([-1.0]), ref) == 0.0
    assert np.isnan(query_shift(np.zeros(0), ref))


def test_a_class_far_below_the_others_is_suspect():
    rng = np.random.default_rng(3)
    ref_pred = np.repeat([0, 1, 2], 300)
    ref = rng.normal(0, 1, 900)
    pred = np.repeat([0, 1, 2], 200)
    # classes 0 and 1 shifted alike (technical); class 2's bulk far lower (a novel type)
    query = np.r_[rng.normal(-2, 1, 400), rng.normal(-12, 1, 200)]
    _, maps = query_aligned_pvalues(query, pred, ref, ref_pred)
    assert [maps[c].suspect for c in range(3)] == [False, False, True]
    assert maps[2].displacement < maps[0].displacement - 3


def _three_classes(rng, class2):
    ref_pred = np.repeat([0, 1, 2], 300)
    ref = rng.normal(0, 1, 900)
    pred = np.r_[np.zeros(200, np.int64), np.ones(200, np.int64), np.full(class2.size, 2)]
    return np.r_[rng.normal(-2, 1, 400), class2], pred, ref, ref_pred


def test_a_novel_type_absorbed_into_a_small_class_is_flagged_against_its_known_cells(
        monkeypatch):
    rng = np.random.default_rng(4)
    # class 2: 12 known cells, shifted like classes 0 and 1, and 120 novel cells far below
    known, novel = rng.normal(-2, 1, 12), rng.normal(-25, 2, 120)
    query, pred, ref, ref_pred = _three_classes(rng, np.r_[known, novel])
    p, maps = query_aligned_pvalues(query, pred, ref, ref_pred)
    assert maps[2].source == "known mode" and maps[2].known_mode == 12
    assert not maps[2].suspect and maps[0].known_mode == maps[1].known_mode == 0
    flagged = benjamini_hochberg(p, 0.05)
    in_novel = np.r_[np.zeros(412, bool), np.ones(120, bool)]
    assert flagged[in_novel].mean() > 0.95
    assert flagged[~in_novel].mean() < 0.05
    # without the split the novel bulk is taken as the class's known cells: not flagged
    monkeypatch.setattr(query_null, "SEPARATION", np.inf)
    p_bulk, maps_bulk = query_aligned_pvalues(query, pred, ref, ref_pred)
    assert maps_bulk[2].source == "class" and maps_bulk[2].suspect
    assert benjamini_hochberg(p_bulk, 0.05)[in_novel].mean() < 0.5


@pytest.mark.parametrize("class2", [
    lambda rng: rng.normal(-12, 1, 200),            # a known type shifted further (suspect)
    lambda rng: -2 - 4 * rng.gumbel(size=200),      # a long continuous lower tail
    lambda rng: np.r_[rng.normal(-2, 1, 60), rng.normal(-6, 1, 140)],  # two close groups
])
def test_a_class_without_a_clean_split_keeps_its_bulk_map(class2):
    rng = np.random.default_rng(5)
    query, pred, ref, ref_pred = _three_classes(rng, class2(rng))
    _, maps = query_aligned_pvalues(query, pred, ref, ref_pred)
    assert maps[2].source == "class" and maps[2].known_mode == 0


def test_the_empty_per_type_record_has_every_field_of_a_class_map():
    from dataclasses import fields

    from pyclams.ood.query_null import ClassMap
    from pyclams.ood.record import NO_MAP
    assert [f.name for f in fields(ClassMap)] == list(NO_MAP)
