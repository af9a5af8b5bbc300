"""`ra3lab theory check`'s verdicts on constructed summaries: each comes out both ways, and every case against a
theorem is listed among the contradictions with its numbers."""

import copy

import pytest

from ra3lab.studies.check import judge


def fit(slope, low, high):
    return {"slope": slope, "low": low, "high": high}


def measure(rho=0.9, grows=True, censored=0, violations=0):
    return {"violations": violations, "spearman": rho, "ordered_like_bound": None if rho is None else rho >= 0.5,
            "slope_horizon": fit(0.7, 0.6, 0.8) if grows else fit(0.0, 0.0, 0.0), "grows_with_horizon": grows,
            "censored": censored}


def family(**policy):
    return {"measures": {"policy_sweeps": measure(**policy), "value_sweeps": measure(),
                         "learner_samples": measure(), "learner_decisions": measure()},
            "bound_slopes": {"slope_horizon": fit(1.1, 1.1, 1.1)}, "looseness_median": 2.0}


def form(holds, violations=0):
    return {"holds": holds, "c": 1.1, "violations": violations, "fit_violations": 0, "tightness": 0.5}


@pytest.fixture
def summaries():
    t1 = {"lemma_3_2_max_residual": 1e-14, "mc_max_abs_z": 1.2}
    t2 = {"thm_3_5_verdicts": {"none/observed": {"K=|Z|": form(True), "K=|Z_eps|": form(True)},
                               "per_distractor/frequency": {"K=|Z|": form(True), "K=|Z_eps|": form(True)}},
          "thm_3_5_forms_holding": {}, "thm_3_5_slopes": {}}
    t3 = {"families": {"chain": family(), "annuity": family()}, "thm_3_6_bound_violations": 0,
          "thm_3_6_looseness_median": 2.0}
    t4 = {"abstraction_vs_primitive": {"n_actions": 64, "n": 32, "budget": 4000, "primitive": 0.3, "abstract": 0.0,
                                       "difference": 0.3, "low": 0.2, "high": 0.4, "verdict": "abstraction"},
          "surface_best": {"budget": 8, "penalty": 0.0, "regret": 0.2, "separated": True, "n_tied": 0},
          "empty_fallbacks": {"primitive": 0, "abstract": 0, "surface": 0}}
    return t1, t2, t3, t4


def test_a_world_that_agrees_with_the_theory_passes_with_no_contradiction(summaries):
    report = judge(*summaries)
    assert report["verdicts"] == {"lemma_3_2_identity": True, "thm_3_5_noise_free": True, "thm_3_6_bound_holds": True,
                                  "thm_3_6_ordering": True, "t4_abstraction_wins": True}
    assert report["passed"] is True and report["contradictions"] == []


@pytest.mark.parametrize("change, verdict, said", [
    (lambda t1, t2, t3, t4: t1.update(lemma_3_2_max_residual=1e-3), "lemma_3_2_identity", None),
    (lambda t1, t2, t3, t4: t2["thm_3_5_verdicts"]["none/observed"].update({"K=|Z_eps|": form(False, 3)}),
     "thm_3_5_noise_free", "Thm 3.5 K=|Z_eps| violated under none/observed (3 violations)"),
    (lambda t1, t2, t3, t4: t3.update(thm_3_6_bound_violations=2), "thm_3_6_bound_holds", None),
    (lambda t1, t2, t3, t4: t3["families"].update(chain=family(rho=-0.96)), "thm_3_6_ordering",
     "Thm 3.6 chain: policy_sweeps do not rank like the bound (rho -0.96)"),
    (lambda t1, t2, t3, t4: t4["abstraction_vs_primitive"].update(verdict="primitive", difference=-0.2, low=-0.3,
                                                                   high=-0.1),
     "t4_abstraction_wins", "T4: abstraction does not beat primitives at |A| = 64"),
])
def test_each_verdict_flips_in_a_world_where_it_must(summaries, change, verdict, said):
    summaries = copy.deepcopy(summaries)
    change(*summaries)
    report = judge(*summaries)
    assert report["verdicts"][verdict] is False and report["passed"] is False
    assert all(value for name, value in report["verdicts"].items() if name != verdict)
    if said:
        assert any(line.startswith(said) for line in report["contradictions"]), report["contradictions"]


def test_a_noisy_violation_is_a_contradiction_but_not_a_failed_verdict(summaries):
    t1, t2, t3, t4 = copy.deepcopy(summaries)
    t2["thm_3_5_verdicts"]["per_distractor/frequency"]["K=|Z|"] = form(False, 5)
    report = judge(t1, t2, t3, t4)
    assert report["verdicts"]["thm_3_5_noise_free"] is True and report["passed"] is True
    assert report["contradictions"] == ["Thm 3.5 K=|Z| violated under per_distractor/frequency (5 violations)"]


def test_cases_the_runs_cannot_judge_are_none_and_do_not_pass_or_fail(summaries):
    t1, t2, t3, t4 = copy.deepcopy(summaries)
    del t2["thm_3_5_verdicts"]["none/observed"]                      # no noise-free run: nothing to judge
    t3["families"]["annuity"] = family(rho=None)                     # too few finite cells for a rank correlation
    report = judge(t1, t2, t3, t4)
    assert report["verdicts"]["thm_3_5_noise_free"] is None and report["verdicts"]["thm_3_6_ordering"] is None
    assert report["passed"] is True


def test_flat_sweeps_censored_learners_and_a_tied_surface_are_reported(summaries):
    t1, t2, t3, t4 = copy.deepcopy(summaries)
    t3["families"]["chain"] = family(grows=False, censored=3)
    t4["surface_best"].update(separated=False, n_tied=4)
    lines = judge(t1, t2, t3, t4)["contradictions"]
    assert "Thm 3.6 chain: policy_sweeps do not grow with 1/(1 - gamma_bar) at fixed tau (slope 0.00 [0.00, 0.00]; " \
           "the bound's 1.10)" in lines
    assert "Thm 3.6 chain: policy_sweeps censored in 3 cells (the learner never reached eps)" in lines
    assert "T4: the surface's best cell (k = 8, c = 0) is tied with 4 other cells" in lines
