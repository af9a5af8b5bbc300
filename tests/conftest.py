"""Shared fixtures: every test writes runs into its own temporary folder."""

import pytest
import torch

torch.set_num_threads(1)  # `make test` runs two pytest workers on two cores: one thread each


@pytest.fixture(autouse=True)
def isolated_runs(tmp_path, monkeypatch):
    """Point RA3LAB_RUNS at a fresh folder so tests never see or touch the user's runs/."""
    monkeypatch.setenv("RA3LAB_RUNS", str(tmp_path / "runs"))
    return tmp_path / "runs"
