"""The PAR report's derived sentences, on hand-made per-attribute figures."""

from slimlab.par.report import correlation_benefit
from slimlab.par.synthetic import ATTRIBUTE_NAMES, WEAK_ATTRIBUTES


def per_attribute(weak_value: float, visible_value: float) -> list[float]:
    return [weak_value if i in WEAK_ATTRIBUTES else visible_value for i in range(len(ATTRIBUTE_NAMES))]


def run(weak_value: float, visible_value: float) -> dict:
    return {"per_attribute_mA": per_attribute(weak_value, visible_value)}


def test_correlation_benefit_splits_weak_and_visible_attributes():
    # baseline: correlated 0.80 everywhere; independent 0.60 weak / 0.75 visible -> +20 weak, +5 visible
    # AAP: correlated 0.90 everywhere; independent 0.70 weak / 0.88 visible -> +20 weak, +2 visible
    runs = {"baseline_wbce": {"0": run(0.80, 0.80), "1": run(0.80, 0.80)},
            "baseline_wbce_independent": {"0": run(0.60, 0.75), "1": run(0.60, 0.75)},
            "aap": {"0": run(0.90, 0.90)}, "aap_independent": {"0": run(0.70, 0.86), "1": run(0.70, 0.90)}}
    weak, visible = len(WEAK_ATTRIBUTES), len(ATTRIBUTE_NAMES) - len(WEAK_ATTRIBUTES)
    baseline_all = (weak * 20 + visible * 5) / (weak + visible)
    aap_all = (weak * 20 + visible * 2) / (weak + visible)
    [line] = correlation_benefit({"runs": runs})
    assert f"baseline (ii) {baseline_all:+.2f} (weak +20.00, visible +5.00)" in line
    assert f"AAP (iv) {aap_all:+.2f} (weak +20.00, visible +2.00)" in line
    assert "AAP gains +0.00 points more" in line and "on the visible ones -3.00" in line


def test_correlation_benefit_needs_both_controls():
    assert correlation_benefit({"runs": {"aap": {"0": run(0.9, 0.9)}}}) == []


def context_report(local_ratio: float, independent_ratio: float, shuffled: float) -> dict:
    return {"aap_minus_branches_ma": 0.002, "aap_minus_branches_ma_over_spread": 0.5,
            "aap_minus_branches_ma_local": 0.016, "aap_minus_branches_ma_over_spread_local": local_ratio,
            "aap_minus_branches_ma_local_independent": 0.001,
            "aap_minus_branches_ma_over_spread_local_independent": independent_ratio,
            "aap_minus_shuffled_prior_ma_local": shuffled, "aap_learned_lambda_mean": 0.5}


def test_reading_supports_the_context_only_when_all_three_local_controls_agree():
    from slimlab.par.report import reading

    [supported] = reading(context_report(6.0, 0.4, 0.01))
    assert "the context carries the gain" in supported and "+1.60 mA points" in supported
    # beyond the spread on independent attributes too, or no better than a shuffled prior, or within the spread
    for figures in ((6.0, 1.5, 0.01), (6.0, 0.4, -0.002), (0.8, 0.4, 0.01)):
        [line] = reading(context_report(*figures))
        assert "**not supported**" in line
    [missing] = reading({"aap_minus_branches_ma": 0.002, "aap_minus_branches_ma_over_spread": 0.5})
    assert "local-trunk runs that isolate the context are missing" in missing


def test_context_plot_needs_all_four_pairs(tmp_path):
    from slimlab.par.report import CONTEXT_PAIRS, context_plot

    entry = {"mA": {"mean": 0.9, "std": 0.01}}
    methods = {name: entry for pair in CONTEXT_PAIRS.values() for name in pair}
    assert context_plot(methods, tmp_path / "context.png") and (tmp_path / "context.png").stat().st_size > 0
    del methods["aap_local_independent"]
    assert not context_plot(methods, tmp_path / "again.png") and not (tmp_path / "again.png").exists()
