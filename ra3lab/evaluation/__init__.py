"""Verifiable rewards for generated code: a sandbox that runs programs, code task files, and pass@k."""

from ra3lab.evaluation.passk import pass_at_k
from ra3lab.evaluation.pool import Limits, SandboxPool, Verdict, check_completion, run_program
from ra3lab.evaluation.solve import EvalConfig, Evaluation, evaluate
from ra3lab.evaluation.tasks import humaneval_tasks, load_tasks, named_tasks

__all__ = ["EvalConfig", "Evaluation", "Limits", "SandboxPool", "Verdict", "check_completion", "evaluate",
           "humaneval_tasks", "load_tasks", "named_tasks", "pass_at_k", "run_program"]
