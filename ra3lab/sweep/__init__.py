"""Sweeps: grids over experiments launched as local processes or one SLURM array job.

| module | role |
|---|---|
| ``spec`` | ``sweeps/<name>.yaml`` (its keys, the first three shared with search spaces), expanded by Hydra's sweeper |
| ``profiles`` | ``slurm/profiles/<name>.yaml``: the sbatch resources of an array job |
| ``launch`` | ``launch(fn, kwargs_list, ...)``: the one place that talks to process pools and submitit |
| ``job`` | ``RunJob``: one run, as a checkpointable job (requeued on preemption, resumed from its checkpoint) |
| ``grid`` | ``run_sweep``: plan, validate every point, write the sweep directory, launch, aggregate |
| ``status`` | each run's state; ``job_alive``: whether a run's or a tuning trial's job still runs (squeue, else pid) |
| ``aggregate`` | ``load_aggregate(sweep_dir)``: one pandas row per run |
| ``slurm`` | squeue / sacct / sinfo with timeouts |
"""
