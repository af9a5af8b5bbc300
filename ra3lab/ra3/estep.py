"""The E-step: self-supervised RL of the latent policy q over where and what to think, pi held fixed.

q starts as a copy of pi. Each step draws ``snippets_per_step`` snippets, rolls out G thought
patterns of each with q (code teacher-forced), scores the code under the frozen pi, and takes one
policy-gradient step on q: loss = -mean(A * sum_t log q(z_t | s_t)), with the gradient on the
latent choices only (thought tokens and the choice not to think), never on the code.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from ra3lab.lm import LineCodec
from ra3lab.ra3.likelihood import score_lines
from ra3lab.ra3.metrics import thought_stats
from ra3lab.ra3.reward import advantages, line_rewards
from ra3lab.ra3.rollout import Rollout, sample_thoughts


@dataclass
class Corpus:
    """Snippets with their decision lines and, on CodeWorld, the true boundary lines."""

    snippets: list[list[str]]
    decisions: list[list[bool]]
    truth: list[set[int]] | None = None

    def take(self, indices: list[int]) -> Corpus:
        return Corpus([self.snippets[i] for i in indices], [self.decisions[i] for i in indices],
                      None if self.truth is None else [self.truth[i] for i in indices])


def rollout_returns(pi, codec: LineCodec, rollouts: list[Rollout], decisions: list[list[bool]], c: float,
                    kind: str) -> torch.Tensor:
    """returns[R]: the summed line rewards of each rollout under the fixed pi."""
    with torch.no_grad():
        scores = score_lines(pi, codec, rollouts, decisions)
    return line_rewards(scores.code, scores.think, scores.decision, c, kind).sum(1)


def e_step(pi, codec: LineCodec, corpus: Corpus, config: DictConfig, c: float, seed: int,
           log: Callable[[int, dict], None] | None = None):
    """Train and return q (a copy of pi); ``log(step, metrics)`` after every step.

    config: estep.{steps, snippets_per_step, group_size, max_thought_tokens, temperature, lr,
    reward, baseline, normalize}.
    """
    q = copy.deepcopy(pi)
    pi.eval()
    optimizer = torch.optim.AdamW(q.parameters(), lr=config.lr)
    generator = torch.Generator().manual_seed(seed)
    G = config.group_size
    for step in range(config.steps):
        batch = corpus.take(torch.randperm(len(corpus.snippets), generator=generator)[:config.snippets_per_step].tolist())
        groups = sample_thoughts(q, codec, batch.snippets, batch.decisions, repeats=G,
                                 max_thought_tokens=config.max_thought_tokens, temperature=config.temperature,
                                 seed=seed * 100_003 + step)
        rollouts = [rollout for group in groups for rollout in group]
        decisions = [d for d in batch.decisions for _ in range(G)]
        returns = rollout_returns(pi, codec, rollouts, decisions, c, config.reward)
        no_thought = None
        if config.baseline == "no_thought":
            plain = [Rollout(tuple(s), {}, {}) for s in batch.snippets]
            no_thought = rollout_returns(pi, codec, plain, batch.decisions, c, config.reward)
        advantage = advantages(returns.view(-1, G), config.baseline, no_thought, config.normalize).view(-1)
        q.train()
        latent = score_lines(q, codec, rollouts, decisions).latent.sum(1)       # (R,), with gradients
        loss = -(advantage * latent).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(q.parameters(), 1.0)
        optimizer.step()
        q.eval()
        n_lines = sum(map(sum, decisions))
        truth = None if batch.truth is None else [t for t in batch.truth for _ in range(G)]
        metrics = {"reward": float(returns.sum()) / n_lines, "loss": loss.item(),
                   **thought_stats(rollouts, decisions, codec, truth)}
        if log is not None:
            log(step, metrics)
    return q
