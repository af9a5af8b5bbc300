"""RLVR post-training: GRPO through TRL's GRPOTrainer, rewarded by hidden unit tests run in the sandbox."""

from ra3lab.rlvr.grpo import RLVRConfig, train_rlvr
from ra3lab.rlvr.reward import unit_test_reward

__all__ = ["RLVRConfig", "train_rlvr", "unit_test_reward"]
