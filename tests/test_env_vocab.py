"""The vocabulary family: one token moves on at each state, harmful tokens end the episode, every other token
does nothing; skill options solve every task and distractor options none; bad input is a ConfigError."""

from __future__ import annotations

import pytest
import torch

from ra3lab.envs.vocab import vocab
from ra3lab.errors import ConfigError
from ra3lab.mdp.planning import optimal_values, start_values
from ra3lab.mdp.pruning import sample_expert_data


def start_value(family, granularity="abstract", allowed=None) -> torch.Tensor:
    smdp = family.smdp(granularity)
    return start_values(smdp, optimal_values(smdp, allowed))


def test_one_token_moves_on_harmful_ones_end_the_rest_do_nothing():
    family = vocab(n_tasks=3, n_actions=20, n_skills=3, skill_length=2, program_length=2, harmful=0.5, seed=3)
    transitions, tokens = family.mdps.transitions, family.meta["tokens"]
    harmful = set(family.meta["harmful_tokens"].tolist())
    assert len(harmful) == round(0.5 * (20 - 6)) and not harmful & set(tokens.flatten().tolist())
    S = 2 * 2 + 2
    goal, sink = S - 2, S - 1
    programs = family.meta["programs"]
    for b in range(3):
        for s in range(S - 2):
            moves = transitions[b, :, s].argmax(-1)                    # (A,) the next state of each token
            assert {a for a in range(20) if moves[a] == sink} == harmful
            right = int(tokens[programs[b, s // 2], s % 2])
            assert moves[right] == s + 1 and transitions[b, right, s, s + 1] == 1.0
            assert all(moves[a] == s for a in range(20) if a not in harmful and a != right)
        for terminal in (goal, sink):
            assert torch.equal(transitions[b, :, terminal].argmax(-1), torch.full((20,), terminal))
    assert family.meta["terminal"][:, [goal, sink]].all() and not family.meta["terminal"][:, :goal].any()
    assert torch.equal(family.mdps.rewards.sum(1).nonzero()[:, 1].unique(), torch.tensor([goal - 1]))


def test_skill_options_reach_the_primitive_optimum_and_distractors_nothing():
    family = vocab(n_tasks=6, n_actions=32, program_length=3, skill_length=3, gamma=0.9)
    optimum = torch.full((6,), 0.9 ** (3 * 3 - 1), dtype=torch.float64)      # reward on the 9th step
    torch.testing.assert_close(start_value(family, "primitive"), optimum)
    torch.testing.assert_close(start_value(family), optimum)
    only_distractors = vocab(n_tasks=6, n_actions=32, program_length=3, skill_length=3, gamma=0.9, n_skill_options=0)
    assert start_value(only_distractors).max() == 0.0
    assert len(only_distractors.options) == 4 and only_distractors.meta["needed_options"] == []


def test_open_loop_skills_lose_value_when_tokens_slip():
    slipping = vocab(n_tasks=4, slip=0.2)
    assert (start_value(slipping, "primitive") - start_value(slipping)).min() > 0.01
    exact = vocab(n_tasks=4, slip=0.0)
    torch.testing.assert_close(start_value(exact, "primitive"), start_value(exact))


def test_needed_skill_options_are_z_eps():
    family = vocab(n_tasks=8, n_skills=8, program_length=2, seed=1)
    needed = family.meta["needed_options"]
    assert 0 < len(needed) < 8                                    # 16 draws from 8 skills left some unused
    keep = torch.zeros(len(family.options), dtype=torch.bool)
    keep[needed] = True
    torch.testing.assert_close(start_value(family, allowed=keep), start_value(family))
    keep[needed[0]] = False                                       # drop one used skill: its tasks are unsolvable
    assert start_value(family, allowed=keep).min() == 0.0


def test_experts_reveal_only_skill_tokens():
    family = vocab(n_tasks=8, n_actions=128)
    data = sample_expert_data(family.primitive, 64, 1.0, torch.Generator().manual_seed(0),
                              terminal=family.meta["terminal"])
    revealed = set(data.counts.sum(0).nonzero().flatten().tolist())
    assert revealed and revealed <= set(family.meta["tokens"].flatten().tolist())


@pytest.mark.parametrize("kwargs, field", [
    ({"n_actions": 23}, "n_actions"),                            # 8 skills x 3 tokens need 24
    ({"n_skill_options": 9}, "n_skill_options"),
    ({"n_skill_options": -1}, "n_skill_options"),
    ({"n_skill_options": 0, "n_distractors": 0}, "n_distractors"),
    ({"harmful": 1.5}, "harmful"),
    ({"slip": 1.0}, "slip"),
    ({"gamma": 1.0}, "gamma"),
    ({"skill_length": 0}, "skill_length"),
    ({"program_length": 0}, "program_length"),
    ({"n_skills": 0}, "n_skills"),
    ({"n_tasks": 0}, "n_tasks"),
])
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ConfigError) as error:
        vocab(**kwargs)
    assert error.value.field == field


def test_seeds_reproduce():
    first, again, other = vocab(seed=0), vocab(seed=0), vocab(seed=1)
    assert torch.equal(first.mdps.transitions, again.mdps.transitions) and first.options.names == again.options.names
    assert not torch.equal(first.mdps.transitions, other.mdps.transitions)
    assert first.options.names != other.options.names
