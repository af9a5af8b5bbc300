"""Exact, batched SMDP machinery: option models, planning, pruning and learning inside a pruned set."""
