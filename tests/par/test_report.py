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
