"""RA3, the method: rollouts of latent thoughts, the rationale reward, the E-step, infusion, the EM loop
with its NTP twin, and held-out evaluation (one idea per module)."""
