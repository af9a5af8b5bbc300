"""Q-learning inside a pruned decision set, and value-iteration sweeps to eps (Theorem 3.6 measured)."""

import math

import pytest
import torch

from ra3lab.errors import ConfigError
from ra3lab.mdp.horizon import vi_sweeps_to_eps
from ra3lab.mdp.learning import q_learning
from ra3lab.mdp.planning import optimal_values, policy_evaluation, start_values, value_iteration
from ra3lab.mdp.smdp import DTYPE, SMDP, MDPBatch, Options, option_models
from ra3lab.theory.bounds import thm_3_6_iterations

LEFT, RIGHT = 0, 1


def goal_chain(n_states: int, slip: float, gamma: float) -> tuple[MDPBatch, torch.Tensor]:
    """Actions left/right, slipping the other way with probability ``slip``; reward 1 on entering the
    absorbing right end; start at state 0. Returns the MDP (B = 1) and its terminal mask (1, S)."""
    P = torch.zeros(2, n_states, n_states, dtype=DTYPE)
    for s in range(n_states - 1):
        for action, step in ((LEFT, -1), (RIGHT, 1)):
            P[action, s, min(max(s + step, 0), n_states - 1)] += 1 - slip
            P[action, s, min(max(s - step, 0), n_states - 1)] += slip
    P[:, -1, -1] = 1
    R = P[:, :, -1].clone()
    R[:, -1] = 0
    terminal = torch.zeros(1, n_states, dtype=torch.bool)
    terminal[0, -1] = True
    return MDPBatch(P.unsqueeze(0), R.unsqueeze(0), torch.zeros(1, dtype=torch.long), gamma), terminal


def repeat_options(taus: list[int]) -> Options:
    """"left tau times" and "right tau times" for each tau, in that order."""
    sequences = [[action] * tau for tau in taus for action in (LEFT, RIGHT)]
    lengths = [[0.0] * (len(seq) - 1) + [1.0] for seq in sequences]
    names = [f"{'LR'[a]}x{len(s)}" for s, a in zip(sequences, [0, 1] * len(taus))]
    return Options.from_sequences(sequences, lengths, names)


@pytest.fixture(scope="module")
def design_chain() -> SMDP:
    """DESIGN.md's 40-state chain (slip 0.1, gamma 0.99) with tau = 1, 2, 4, 8 as four SMDPs of one batch."""
    mdp, _ = goal_chain(40, 0.1, 0.99)
    models = [option_models(mdp, repeat_options([tau])) for tau in (1, 2, 4, 8)]
    return SMDP(torch.cat([m.transitions for m in models]), torch.cat([m.rewards for m in models]),
                torch.zeros(4, dtype=torch.long), 0.99)


def test_vi_sweeps_on_the_design_chain(design_chain):
    sweeps = vi_sweeps_to_eps(design_chain, 1e-3)
    # DESIGN.md's counts: the backup that computes the greedy policy is a sweep too.
    assert sweeps["policy_sweeps"].tolist() == [39, 20, 10, 5]
    assert sweeps["value_sweeps"].tolist() == [67, 34, 17, 9]
    bounds = [math.ceil(thm_3_6_iterations(float(g), float(r), 1e-3))
              for g, r in zip(design_chain.gamma_bar(), design_chain.reward_bound())]
    assert bounds == [1141, 539, 257, 123]                            # DESIGN.md's bounds


def test_policy_sweeps_match_value_iteration_policies(design_chain):
    eps, v_star = 1e-3, optimal_values(design_chain)
    sweeps = vi_sweeps_to_eps(design_chain, eps)["policy_sweeps"].long()

    def loss(k: int) -> torch.Tensor:
        policy = value_iteration(design_chain, tol=1e-300, max_iter=k).policy
        return (v_star - policy_evaluation(design_chain, policy)).amax(1)

    rows = torch.arange(4)
    assert bool((loss(int(sweeps.max()) - 1)[rows] <= eps).all())
    for b, k in enumerate(sweeps.tolist()):                           # value_iteration(max_iter=k - 1) did k backups
        assert loss(k - 1)[b] <= eps < loss(k - 2)[b]


def test_vi_sweeps_respect_allowed_and_report_unreached():
    mdp, _ = goal_chain(8, 0.0, 0.9)
    smdp = option_models(mdp, repeat_options([1]))
    only_left = torch.tensor([True, False])
    assert vi_sweeps_to_eps(smdp, 1e-6, allowed=only_left) == {"policy_sweeps": torch.ones(1, dtype=torch.float64),
                                                                "value_sweeps": torch.zeros(1, dtype=torch.float64)}
    capped = vi_sweeps_to_eps(smdp, 1e-6, max_sweeps=3)
    assert torch.isinf(capped["policy_sweeps"]).all() and torch.isinf(capped["value_sweeps"]).all()


@pytest.mark.parametrize("kwargs, field", [({"eps": 0.0}, "eps"), ({"max_sweeps": -1}, "max_sweeps"),
                                           ({"allowed": torch.tensor([False, False])}, "allowed")])
def test_vi_sweeps_reject_bad_inputs(kwargs, field):
    mdp, _ = goal_chain(4, 0.0, 0.9)
    with pytest.raises(ConfigError, match=f"^{field} = "):
        vi_sweeps_to_eps(option_models(mdp, repeat_options([1])), **({"eps": 0.1} | kwargs))


@pytest.fixture(scope="module")
def learned():
    """Six learners on a 6-state slippery chain: three over {L, R, LL, RR}, three over {L, R}."""
    mdp, terminal = goal_chain(6, 0.1, 0.9)
    options = repeat_options([1, 2])
    allowed = torch.ones(6, 4, dtype=torch.bool)
    allowed[3:, 2:] = False
    result = q_learning(mdp, options, allowed, torch.zeros(6, dtype=torch.long), n_decisions=1500, eval_every=50,
                        eps=0.02, generator=torch.Generator().manual_seed(0), terminal=terminal)
    return mdp, options, allowed, terminal, result


def test_q_learning_reaches_small_error_inside_z_hat(learned):
    *_, result = learned
    T = 1500 // 50 + 1
    assert result.decisions.tolist() == list(range(0, 1501, 50))
    assert result.error.shape == result.primitive_steps.shape == (T, 6)
    assert result.error.min() >= -1e-12                                # no policy in Z_hat beats V*_{M|Z_hat}
    assert result.error[0].min() > 0.3                                 # the untrained greedy policy goes left
    assert result.error[-1].max() <= 0.02           # seeds 0-9 all pass: near-ties resolve slowly
    assert torch.isfinite(result.samples_to_eps).all()


def test_q_learning_error_is_exact_and_samples_are_counted(learned):
    mdp, options, allowed, terminal, result = learned
    smdp = option_models(mdp, options).select(torch.zeros(6, dtype=torch.long))
    greedy = result.q.argmax(1)
    value = start_values(smdp, policy_evaluation(smdp, greedy, terminal.expand(6, -1)))
    best = start_values(smdp, optimal_values(smdp, allowed))
    assert torch.allclose(result.error[-1], best - value, atol=1e-12)
    steps = result.primitive_steps
    assert bool((steps[1:] >= steps[:-1]).all())
    assert torch.equal(steps[:, 3:], result.decisions.unsqueeze(1).expand(-1, 3))   # one step per primitive option
    assert bool((steps[-1, :3] > 1500).all())                          # two-step options cost two samples
    first = (result.error <= 0.02).long().argmax(0)
    assert torch.equal(result.samples_to_eps, steps[first, torch.arange(6)].to(DTYPE))
    assert torch.isinf(result.q[3:, 2:]).all()                         # pruned options never get a value


def test_q_learning_explores_from_the_prior_and_stops_options_at_the_goal():
    mdp, terminal = goal_chain(6, 0.0, 0.9)
    options = repeat_options([1, 2])
    prior = torch.tensor([[0.0, 0.0, 0.0, 1.0]])                        # explore with "right twice" only
    result = q_learning(mdp, options, torch.ones(1, 4, dtype=torch.bool), torch.zeros(1, dtype=torch.long),
                        n_decisions=30, eval_every=30, eps=0.01, generator=torch.Generator().manual_seed(1),
                        terminal=terminal, epsilon=1.0, prior=prior, stickiness=0.5)
    # 0 -> 2 -> 4 -> 5: the third option stops after one step at the goal; 10 episodes of 3 decisions
    assert result.primitive_steps[-1].tolist() == [50]


def test_a_pruned_set_without_the_goal_has_nothing_to_learn():
    mdp, terminal = goal_chain(6, 0.1, 0.9)
    allowed = torch.tensor([[True, False, True, False]])                # left moves only
    result = q_learning(mdp, repeat_options([1, 2]), allowed, torch.zeros(1, dtype=torch.long), n_decisions=20,
                        eval_every=10, eps=0.01, generator=torch.Generator().manual_seed(2), terminal=terminal)
    assert result.error.abs().max() < 1e-12 and result.samples_to_eps.tolist() == [0.0]


@pytest.mark.parametrize("kwargs, field", [
    ({"allowed": torch.tensor([[True, False], [False, False]])}, "allowed"),
    ({"tasks": torch.tensor([0, 1])}, "tasks"), ({"n_decisions": 0}, "n_decisions"), ({"eval_every": 0}, "eval_every"),
    ({"eps": 0.0}, "eps"), ({"lr_power": 0.5}, "lr_power"), ({"epsilon": 1.5}, "epsilon"),
    ({"stickiness": 1.0}, "stickiness"), ({"prior": torch.tensor([[0.0, 1.0], [0.0, 1.0]])}, "prior"),
    ({"horizon": 0}, "horizon"), ({"terminal": torch.zeros(2, 4, dtype=torch.bool)}, "terminal"),
])
def test_q_learning_rejects_bad_inputs(kwargs, field):
    mdp, terminal = goal_chain(4, 0.0, 0.9)
    arguments = {"allowed": torch.tensor([[True, False], [True, True]]), "tasks": torch.zeros(2, dtype=torch.long),
                 "n_decisions": 10, "eval_every": 5, "eps": 0.1, "generator": torch.Generator(),
                 "terminal": terminal} | kwargs
    with pytest.raises(ConfigError, match=f"^{field} = "):
        q_learning(mdp, repeat_options([1]), **arguments)
