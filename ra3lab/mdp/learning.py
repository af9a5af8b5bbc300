"""SMDP Q-learning inside a pruned decision set, simulated at primitive level so samples count honestly.

``N`` independent learners run side by side (learner n on task ``tasks[n]`` with its own Z_hat,
``allowed[n]``); every tensor op is vectorised over N, only decisions are looped over.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ra3lab.errors import check
from ra3lab.mdp.planning import optimal_values, policy_evaluation, start_values
from ra3lab.mdp.pruning import check_allowed
from ra3lab.mdp.smdp import DTYPE, MDPBatch, Options, option_models


@dataclass(frozen=True)
class LearningResult:
    """decisions (T,): decision counts at the evaluations (0, eval_every, 2 eval_every, ...);
    primitive_steps (T, N): primitive transitions each learner had sampled by then;
    error (T, N): V*_{M|Z_hat}(s0) - V^pi(s0) of the greedy policy, exact;
    samples_to_eps (N,): primitive steps at the first evaluation with error <= eps (inf if never);
    q (N, Z, S): the final Q-values, -inf outside Z_hat."""

    decisions: torch.Tensor
    primitive_steps: torch.Tensor
    error: torch.Tensor
    samples_to_eps: torch.Tensor
    q: torch.Tensor


def _run_options(mdps: MDPBatch, options: Options, tasks, state, decision, terminal, generator):
    """Execute one option per learner at primitive level. Returns (discounted reward G, discount
    gamma^tau, next state, primitive steps), each (N,); an option stops early at a terminal state."""
    N = len(tasks)
    rows = torch.arange(N)
    tau = torch.multinomial(options.length_probs[decision], 1, generator=generator).squeeze(1) + 1
    reward = torch.zeros(N, dtype=DTYPE)
    discount = torch.ones(N, dtype=DTYPE)
    steps = torch.zeros(N, dtype=torch.long)
    for k in range(options.actions.shape[1]):
        running = (k < tau) & ~terminal[rows, state]
        if not running.any():
            break
        action = options.actions[decision, k]
        reward += running * discount * mdps.rewards[tasks, action, state]
        following = torch.multinomial(mdps.transitions[tasks, action, state], 1, generator=generator).squeeze(1)
        state = torch.where(running, following, state)
        discount = torch.where(running, discount * mdps.gamma, discount)
        steps += running
    return reward, discount, state, steps


def q_learning(
    mdps: MDPBatch,
    options: Options,
    allowed: torch.Tensor,
    tasks: torch.Tensor,
    n_decisions: int,
    eval_every: int,
    eps: float,
    generator: torch.Generator,
    terminal: torch.Tensor | None = None,
    lr_power: float = 0.6,
    epsilon: float = 0.1,
    prior: torch.Tensor | None = None,
    stickiness: float = 0.0,
    horizon: int | None = None,
    stop_at_eps: bool = False,
) -> LearningResult:
    """SMDP Q-learning of N learners, learner n on task ``tasks[n]`` (N,) restricted to ``allowed[n]`` (N, Z).

    Decision: greedy in Q[n, :, s] (random tie-break) with probability 1 - epsilon, otherwise a draw
    from the sticky exploration prior ``stickiness * 1[z = z_prev] + (1 - stickiness) * prior[n]``
    (``prior`` (N, Z) defaults to uniform over Z_hat; no z_prev at an episode start).
    Update: ``Q[s, z] += lr (G + gamma^tau max_{z' in Z_hat} Q[s', z'] (1 - terminal[s']) - Q[s, z])``
    with the polynomial step size ``lr = visits(s, z) ** -lr_power``, lr_power in (0.5, 1]: it meets
    the Robbins-Monro conditions, and below 1 avoids the horizon-exponential slowness of 1/visits
    (Even-Dar & Mansour 2003). Episodes restart at s0 on a terminal state or after ``horizon``
    decisions (default 4 S). Evaluation every ``eval_every`` decisions is exact: the greedy policy
    (ties to the lowest index) is evaluated on the option models of the learner's task.
    ``stop_at_eps``: stop at the first evaluation by which every learner has reached eps (T is then shorter).
    """
    B, S, Z = len(mdps), mdps.n_states, len(options)
    N = len(tasks)
    check(tasks.dim() == 1 and N >= 1, "tasks", tuple(tasks.shape), "must be a non-empty 1-d tensor")
    check(bool(((tasks >= 0) & (tasks < B)).all()), "tasks", tasks.tolist(), f"must index tasks 0..{B - 1}")
    check_allowed(allowed, N, Z)
    check(allowed.dim() == 2, "allowed", tuple(allowed.shape), f"must have shape {(N, Z)}, one row per learner")
    check(n_decisions >= 1, "n_decisions", n_decisions, "must be >= 1")
    check(eval_every >= 1, "eval_every", eval_every, "must be >= 1")
    check(eps > 0, "eps", eps, "must be > 0")
    check(0.5 < lr_power <= 1, "lr_power", lr_power, "must lie in (0.5, 1]")
    check(0 <= epsilon <= 1, "epsilon", epsilon, "must lie in [0, 1]")
    check(0 <= stickiness < 1, "stickiness", stickiness, "must lie in [0, 1)")
    check(horizon is None or horizon >= 1, "horizon", horizon, "must be >= 1 (or None for 4 * n_states)")
    if terminal is not None:
        check(tuple(terminal.shape) == (B, S), "terminal", tuple(terminal.shape), f"must have shape {(B, S)}")
    if prior is not None:
        check(tuple(prior.shape) == (N, Z), "prior", tuple(prior.shape), f"must have shape {(N, Z)}")
        check(bool((prior >= 0).all()) and bool((prior * allowed).sum(1).gt(0).all()), "prior", "a row without mass",
              "must be >= 0 with positive mass on each learner's allowed decisions")

    horizon = 4 * S if horizon is None else horizon
    terminal = (torch.zeros(B, S, dtype=torch.bool) if terminal is None else terminal)[tasks]   # (N, S)
    smdp = option_models(mdps, options).select(tasks)
    best = start_values(smdp, optimal_values(smdp, allowed))
    explore = (torch.ones(N, Z, dtype=DTYPE) if prior is None else prior.to(DTYPE)) * allowed
    explore = explore / explore.sum(1, keepdim=True)
    q = torch.zeros(N, Z, S, dtype=DTYPE).masked_fill(~allowed.unsqueeze(-1), float("-inf"))
    visits = torch.zeros(N, Z, S, dtype=DTYPE)
    rows = torch.arange(N)
    state, previous = smdp.start.clone(), torch.full((N,), -1)
    episode_length = torch.zeros(N, dtype=torch.long)
    steps = torch.zeros(N, dtype=torch.long)

    def error() -> torch.Tensor:
        return best - start_values(smdp, policy_evaluation(smdp, q.argmax(1), terminal))

    decisions, step_log, error_log = [0], [steps.clone()], [error()]
    reached = error_log[0] <= eps
    for t in range(1, n_decisions + 1):
        here = q[rows, :, state]                                              # (N, Z)
        greedy = torch.multinomial((here == here.amax(1, keepdim=True)).to(DTYPE), 1, generator=generator).squeeze(1)
        sticky = stickiness * (previous >= 0).to(DTYPE).unsqueeze(1)
        repeat = torch.nn.functional.one_hot(previous.clamp(min=0), Z).to(DTYPE)
        exploratory = torch.multinomial(sticky * repeat + (1 - sticky) * explore, 1, generator=generator).squeeze(1)
        decision = torch.where(torch.rand(N, generator=generator, dtype=DTYPE) < epsilon, exploratory, greedy)

        reward, discount, following, n_steps = _run_options(mdps, options, tasks, state, decision, terminal, generator)
        ended = terminal[rows, following]
        target = reward + discount * torch.where(ended, 0.0, q[rows, :, following].amax(1))
        visits[rows, decision, state] += 1
        lr = visits[rows, decision, state] ** -lr_power
        q[rows, decision, state] += lr * (target - q[rows, decision, state])

        steps += n_steps
        episode_length += 1
        restart = ended | (episode_length >= horizon)
        state = torch.where(restart, smdp.start, following)
        previous = torch.where(restart, -1, decision)
        episode_length = torch.where(restart, 0, episode_length)
        if t % eval_every == 0:
            decisions.append(t)
            step_log.append(steps.clone())
            error_log.append(error())
            reached |= error_log[-1] <= eps
            if stop_at_eps and reached.all():
                break

    primitive_steps, errors = torch.stack(step_log), torch.stack(error_log)
    first = (errors <= eps).to(torch.long).argmax(0)
    samples = torch.where(reached, primitive_steps[first, rows].to(DTYPE), float("inf"))
    return LearningResult(torch.tensor(decisions), primitive_steps, errors, samples, q)
