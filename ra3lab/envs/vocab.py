"""Vocabulary tasks, the shape of an LLM's decision problem: many tokens, few that matter at any point.

A task is a program of ``program_length`` skills drawn from a library of ``n_skills``; a skill is a
fixed string of ``skill_length`` tokens from a vocabulary of ``n_actions`` primitive actions. State
``p L + i`` means "skill p of the program is written up to its token i"; state ``P L`` is the goal
(reward 1 on entering it) and ``P L + 1`` a failure sink, both absorbing. At every state exactly one
token moves on (w.p. 1 - slip; else nothing happens), a few "harmful" tokens (like a premature
end of text) fall into the sink, and every other token changes nothing. The options are compact:
one macro-action per skill (its token string) plus a few distractors (random token strings).
"""

from __future__ import annotations

import torch

from ra3lab.envs.family import OptionFamily
from ra3lab.errors import check
from ra3lab.mdp.smdp import DTYPE, MDPBatch, Options


def vocab_transitions(programs: torch.Tensor, tokens: torch.Tensor, harmful: torch.Tensor, n_actions: int,
                      slip: float) -> torch.Tensor:
    """(B, A, S, S) dynamics of programs (B, P) over skills whose token strings are tokens (n_skills, L).

    harmful: (k,) long, the tokens that fall into the sink. Goal (S - 2) and sink (S - 1) are absorbing.
    """
    B, P = programs.shape
    L = tokens.shape[1]
    S = P * L + 2
    sink, cells = S - 1, torch.arange(P * L)
    transitions = torch.eye(S, dtype=DTYPE).expand(B, n_actions, S, S).clone()   # default: nothing happens
    transitions[:, harmful.unsqueeze(1), cells] = torch.nn.functional.one_hot(torch.tensor(sink), S).to(DTYPE)
    right = tokens[programs].flatten(1)                                           # (B, P L): the token that moves on
    tasks = torch.arange(B).unsqueeze(1)
    moved = torch.zeros(B, P * L, S, dtype=DTYPE)
    moved[tasks, cells, cells + 1] = 1.0 - slip
    moved[tasks, cells, cells] += slip
    transitions[tasks, right, cells] = moved
    return transitions


def vocab_options(tokens: torch.Tensor, n_skill_options: int, n_distractors: int, n_actions: int,
                  generator: torch.Generator) -> Options:
    """The first ``n_skill_options`` skills' token strings, then distractors: random strings of as many tokens."""
    L = tokens.shape[1]
    distractors = torch.randint(n_actions, (n_distractors, L), generator=generator)
    actions = torch.cat([tokens[:n_skill_options], distractors])
    names = [f"skill{j}:" + ",".join(map(str, row.tolist())) for j, row in enumerate(tokens[:n_skill_options])]
    names += [f"distractor{d}:" + ",".join(map(str, row.tolist())) for d, row in enumerate(distractors)]
    length_probs = torch.zeros(len(actions), L, dtype=DTYPE)
    length_probs[:, -1] = 1.0
    return Options(actions, length_probs, tuple(names))


def vocab(
    n_tasks: int = 16,
    n_actions: int = 64,
    n_skills: int = 8,
    skill_length: int = 3,
    program_length: int = 4,
    n_skill_options: int | None = None,
    n_distractors: int = 4,
    harmful: float = 0.25,
    slip: float = 0.0,
    gamma: float = 0.95,
    seed: int = 0,
) -> OptionFamily:
    """``n_tasks`` programs over one vocabulary; start at state 0 (nothing written).

    n_tasks: tasks B drawn from p(M): programs of skills drawn uniformly (with repeats) from the library.
    n_actions: vocabulary size |A| (primitive actions), >= n_skills * skill_length; the skills' tokens are distinct.
    n_skills: skills in the library, >= 1. skill_length: tokens L per skill = the length tau of every option, >= 1.
    program_length: skills P per task, >= 1 (S = P L + 2 states; an optimal episode takes P L steps).
    n_skill_options: skills offered as options (the first ones of the library), in [0, n_skills]; None: all.
        Fewer than the programs use leaves the abstraction unable to solve some tasks.
    n_distractors: options that write a random string of L tokens, >= 0 (Z = n_skill_options + n_distractors >= 1).
    harmful: share of the tokens no skill uses that fall into the sink, in [0, 1].
    slip: probability that the right token fails to move on (the state stays), in [0, 1).
    gamma: discount per primitive step, in (0, 1). seed: seeds programs, tokens and distractors.

    meta: "terminal" (B, S) bool (goal and sink); "goal" (B,) long; "programs" (B, P) long, each task's skills;
    "tokens" (n_skills, L) long, each skill's string; "harmful_tokens" long; "needed_options": the skill
    options some program uses (Z_eps); "action_names".
    """
    n_skill_options = n_skills if n_skill_options is None else n_skill_options
    check(n_tasks >= 1, "n_tasks", n_tasks, "need at least 1 task")
    check(n_skills >= 1, "n_skills", n_skills, "need at least 1 skill")
    check(skill_length >= 1, "skill_length", skill_length, "need at least 1 token per skill")
    check(program_length >= 1, "program_length", program_length, "need at least 1 skill per task")
    check(n_actions >= n_skills * skill_length, "n_actions", n_actions,
          f"must be >= n_skills * skill_length = {n_skills * skill_length} (every skill has its own tokens)")
    check(0 <= n_skill_options <= n_skills, "n_skill_options", n_skill_options,
          f"must lie in [0, n_skills] = [0, {n_skills}]")
    check(n_distractors >= 0, "n_distractors", n_distractors, "must be >= 0")
    check(n_skill_options + n_distractors >= 1, "n_distractors", n_distractors,
          "need at least one option: raise n_distractors or n_skill_options")
    check(0.0 <= harmful <= 1.0, "harmful", harmful, "must lie in [0, 1]")
    check(0.0 <= slip < 1.0, "slip", slip, "must lie in [0, 1)")
    check(0.0 < gamma < 1.0, "gamma", gamma, "must lie in the open interval (0, 1)")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_actions, generator=generator)
    used = n_skills * skill_length
    tokens = order[:used].view(n_skills, skill_length)
    spare = order[used:]
    harmful_tokens = spare[: round(harmful * len(spare))].sort().values
    programs = torch.randint(n_skills, (n_tasks, program_length), generator=generator)
    transitions = vocab_transitions(programs, tokens, harmful_tokens, n_actions, slip)
    S = program_length * skill_length + 2
    goal = torch.full((n_tasks,), S - 2, dtype=torch.long)
    terminal = torch.zeros(n_tasks, S, dtype=torch.bool)
    terminal[:, S - 2:] = True
    rewards = transitions[:, :, :, S - 2].masked_fill(terminal.unsqueeze(1), 0.0)
    mdps = MDPBatch(transitions, rewards, torch.zeros(n_tasks, dtype=torch.long), gamma)
    options = vocab_options(tokens, n_skill_options, n_distractors, n_actions, generator)
    meta = {"terminal": terminal, "goal": goal, "programs": programs, "tokens": tokens,
            "harmful_tokens": harmful_tokens,
            "needed_options": sorted(set(programs.flatten().tolist()) & set(range(n_skill_options))),
            "action_names": tuple(f"t{a}" for a in range(n_actions))}
    return OptionFamily("vocab", mdps, options, meta)
