"""line_rewards' kinds on hand-computed [2, 3] cases, its input checks, and what each kind changes."""

from __future__ import annotations

import pytest
import torch

from ra3lab.errors import ConfigError
from ra3lab.ra3.reward import advantages, line_rewards

CODE = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, -1.0]])
THINK = torch.tensor([[True, False, False], [False, False, True]])
DECISION = torch.tensor([[False, True, True], [True, True, True]])
C = 0.5


def rewards(kind: str, **inputs) -> torch.Tensor:
    """Tensor[2, 3] of line_rewards on the shared case."""
    return line_rewards(CODE, THINK, DECISION, C, kind, **inputs)


def test_ra3_and_penalty_only():
    torch.testing.assert_close(rewards("ra3"), torch.tensor([[0.0, -2.0, -3.0], [-1.0, -1.0, -1.5]]))
    torch.testing.assert_close(rewards("penalty_only"), torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -0.5]]))


def test_quiet_star():
    plain = torch.tensor([[-4.0, -2.5, -2.0], [-1.5, -1.0, -3.0]])
    torch.testing.assert_close(rewards("quiet_star", plain=plain), torch.tensor([[0.0, 0.5, -1.0], [0.5, 0.0, 1.5]]))


def test_rlp():
    ema = torch.tensor([[-9.0, -1.5, -3.5], [-0.5, -2.0, -1.25]])
    torch.testing.assert_close(rewards("rlp", ema=ema), torch.tensor([[0.0, -0.5, 0.5], [-0.5, 1.0, -0.25]]))


def test_latro_keeps_gradients():
    latent = torch.tensor([[-0.5, -0.25, -1.0], [-2.0, -0.5, -1.5]], requires_grad=True)
    reference = torch.tensor([[-1.0, -0.75, -0.5], [-1.0, -0.5, -3.5]])
    before = latent.detach().clone()
    reward = rewards("latro", latent=latent, reference=reference, kl_coef=0.5)
    torch.testing.assert_close(reward.detach(), torch.tensor([[0.0, -2.25, -2.75], [-0.5, -1.0, -2.5]]))
    reward.sum().backward()
    torch.testing.assert_close(latent.grad, -0.5 * DECISION.float())
    torch.testing.assert_close(latent.detach(), before)


def test_latro_penalty_flips_the_preferred_thought():
    """A thought that helps the code but whose latent log-prob is far above the reference loses under latro."""
    code, think, decision = torch.tensor([[-1.0], [-2.0]]), torch.tensor([[True], [False]]), torch.ones(2, 1).bool()
    latent, reference = torch.tensor([[-0.1], [-0.7]]), torch.tensor([[-5.0], [-0.7]])

    def returns(kind: str, kl_coef: float = 0.0) -> torch.Tensor:
        reward = line_rewards(code, think, decision, 0.1, kind, latent=latent, reference=reference, kl_coef=kl_coef)
        return reward.sum(1)[None]

    assert advantages(returns("ra3"))[0, 0] > 0
    assert advantages(returns("latro", kl_coef=1.0))[0, 0] < 0
    torch.testing.assert_close(returns("latro", kl_coef=1.0), torch.tensor([[-6.0, -2.0]]))
    torch.testing.assert_close(returns("latro", kl_coef=0.0), returns("ra3"))


@pytest.mark.parametrize("kind,baseline_input", [("quiet_star", "plain"), ("rlp", "ema")])
def test_z_independent_kinds_match_ra3_under_group_baseline(kind, baseline_input):
    snippets, group, lines = 4, 5, 6
    generator = torch.Generator().manual_seed(0)
    code = -torch.rand(snippets * group, lines, generator=generator) * 3
    think = torch.rand(snippets * group, lines, generator=generator) < 0.4
    decision = (torch.rand(snippets, 1, lines, generator=generator) < 0.7).expand(-1, group, -1).reshape(-1, lines)
    no_thought = (-torch.rand(snippets, 1, lines, generator=generator) * 3).expand(-1, group, -1).reshape(-1, lines)
    ra3 = line_rewards(code, think, decision, 0.2).sum(1).view(snippets, group)
    other = line_rewards(code, think, decision, 0.2, kind, **{baseline_input: no_thought}).sum(1).view(snippets, group)
    assert not torch.allclose(ra3, other)
    assert not torch.allclose(advantages(ra3, "none"), advantages(other, "none"))
    for normalize in (False, True):
        torch.testing.assert_close(advantages(other, "group", normalize=normalize),
                                   advantages(ra3, "group", normalize=normalize))


@pytest.mark.parametrize("kind,inputs", [("quiet_star", {}), ("rlp", {"plain": CODE}),
                                         ("latro", {"latent": CODE}), ("latro", {"reference": CODE})])
def test_missing_input(kind, inputs):
    with pytest.raises(ConfigError, match=f"estep.reward = '{kind}' is invalid: needs"):
        rewards(kind, **inputs)


@pytest.mark.parametrize("name", ["plain", "ema", "latent", "reference", "think", "decision"])
def test_bad_shape(name):
    inputs = {"think": THINK, "decision": DECISION, "plain": CODE, "ema": CODE, "latent": CODE, "reference": CODE}
    inputs[name] = inputs[name][:, :2]
    think, decision = inputs.pop("think"), inputs.pop("decision")
    with pytest.raises(ConfigError, match=rf"^{name} = \(2, 2\) is invalid"):
        line_rewards(CODE, think, decision, C, "latro", **inputs)


def test_bad_coefficients_and_kind():
    with pytest.raises(ConfigError, match=r"^c = -0\.1"):
        line_rewards(CODE, THINK, DECISION, -0.1)
    with pytest.raises(ConfigError, match=r"^estep\.kl_coef = -1\.0"):
        rewards("latro", latent=CODE, reference=CODE, kl_coef=-1.0)
    with pytest.raises(ConfigError, match=r"^estep\.reward = 'brite'"):
        rewards("brite")
