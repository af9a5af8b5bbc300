"""`ra3lab bench scaling`: the two training loops of RA3 in one launch of ``processes`` processes (DDP on
accelerate: gloo on this machine's CPUs) against the same code in one process: next-token training (what
pre-training, NTP and the M-step run) and the E-step (q's rollouts, their scores under pi and q's policy gradient).

Both configurations do the same work with the same global batch, so the weights should agree (their largest
difference is reported, for the trained model and for q). Each configuration gets the machine's ``cores``: the one
process ``cores`` torch threads, each of the P processes ``cores / P``. Units: ``tokens_per_s`` is the code tokens
a loop trains on (NTP: steps x global batch x the programs' mean length; the E-step: steps x snippets x G rollouts
x the snippets' mean length) over its wall time (model building and the launch excluded); ``speedup`` = the
launch's rate / one process's; ``efficiency`` = speedup / P (1: perfect scaling).

On a machine with a GPU and vLLM it also reports generation: tokens/s of sampling completions of CodeWorld tasks
from the same tiny model (bf16) with vLLM against HF generate (the peer), in the same run (:func:`generation`).

Run as a module (``python -m ra3lab.bench.scaling <out.json> <processes> <steps> <threads> <batch>``) it is one
process of a measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ra3lab.errors import check

HIDDEN, LAYERS, HEADS = 128, 4, 4
PROGRAMS = 400
ESTEP: dict[str, Any] = {"steps": 3, "snippets_per_step": 8, "group_size": 4, "max_thought_tokens": 6, "lr": 1e-4}


def measure(out: Path, processes: int, steps: int, threads: int, batch_size: int) -> None:
    """One process of a measurement: NTP training, then E-steps (each from the same built model), and (rank 0)
    write their seconds, tokens and the weights' paths to ``out``."""
    import torch
    from omegaconf import OmegaConf

    from ra3lab.lm import LineCodec, build_model, train_ntp
    from ra3lab.ra3.estep import Corpus, EStepConfig, e_step
    from ra3lab.runtime import world

    torch.set_num_threads(threads)
    tokenizer, programs = corpus()
    codec = LineCodec(tokenizer)
    sequences = [codec.encode_lines(lines)[0] + [codec.eos_id] for lines in programs]
    model = build_model(tokenizer, hidden=HIDDEN, layers=LAYERS, heads=HEADS, seed=0)
    runtime = OmegaConf.create({"device": "cpu", "dtype": "fp32", "compile": False, "strategy": "ddp", "nodes": 1,
                                "launcher": "torchrun" if processes > 1 else "none", "processes": processes})
    mean_length = sum(map(len, sequences)) / len(sequences)                  # tokens, in expectation over batches
    start = time.perf_counter()
    train_ntp(model, sequences, steps=steps, batch_size=batch_size, lr=1e-3, runtime=runtime)
    ntp_seconds = time.perf_counter() - start
    snippets = Corpus(programs, [[True] * len(lines) for lines in programs])
    config = EStepConfig(**ESTEP)
    start = time.perf_counter()             # from the built model: both loops start where both configurations agree
    q = e_step(build_model(tokenizer, hidden=HIDDEN, layers=LAYERS, heads=HEADS, seed=0), codec, snippets, config,
               c=0.01, seed=0)
    estep_seconds = time.perf_counter() - start
    if world()[0] == 0:
        weights = {"ntp": out.with_suffix(".ntp.pt"), "estep": out.with_suffix(".q.pt")}
        torch.save(model.state_dict(), weights["ntp"])
        torch.save(q.state_dict(), weights["estep"])
        rollouts = config.steps * config.snippets_per_step * config.group_size
        out.write_text(json.dumps({
            "ntp": {"seconds": ntp_seconds, "tokens": steps * batch_size * mean_length, "weights": str(weights["ntp"])},
            "estep": {"seconds": estep_seconds, "tokens": rollouts * mean_length, "weights": str(weights["estep"])}}))


def corpus(count: int = PROGRAMS):
    """(tokenizer, CodeWorld programs as lines): the bench's data, the same in every process."""
    from ra3lab.codeworld import CodeWorld
    from ra3lab.lm import train_tokenizer

    programs = [program.lines() for program in CodeWorld(seed=0).sample(count, "train", seed=0)]
    return train_tokenizer([line for lines in programs for line in lines], vocab_size=512), programs


def generation(prompts: int = 64, new_tokens: int = 96) -> dict:
    """Tokens/s of sampling one completion for each of ``prompts`` CodeWorld tasks (at most ``new_tokens`` each)
    from the bench's tiny model in bf16 on this machine's first GPU: vLLM against HF generate, each after one
    warm-up call; ``{"measured": False, "why": ...}`` without a GPU or vLLM."""
    import importlib.util

    import torch

    if not torch.cuda.is_available():
        return {"measured": False, "why": "no GPU here"}
    if importlib.util.find_spec("vllm") is None:
        return {"measured": False, "why": "vLLM is not installed: pip install 'ra3lab[gpu]'"}
    from ra3lab.codeworld import CodeWorld
    from ra3lab.lm import HFGenerator, VLLMGenerator, build_model

    tokenizer, _ = corpus()
    tasks = [task["prompt"] for task in CodeWorld(seed=0).tasks(prompts, "heldout", seed=0)]
    rates = {}
    with tempfile.TemporaryDirectory() as folder:
        model = build_model(tokenizer, hidden=HIDDEN, layers=LAYERS, heads=HEADS, seed=0)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        on_gpu: torch.nn.Module = model
        generators = {"hf": HFGenerator(on_gpu.to(device="cuda", dtype=torch.bfloat16), tokenizer),
                      "vllm": VLLMGenerator(folder, tokenizer, dtype="bfloat16", gpu_memory_utilization=0.3)}
        for name, generator in generators.items():
            generator.generate(tasks[:4], new_tokens, "sample", 1.0, seed=1)          # warm-up
            torch.cuda.synchronize()
            start = time.perf_counter()
            completions = generator.generate(tasks, new_tokens, "sample", 1.0, seed=0)
            torch.cuda.synchronize()
            rates[name] = sum(len(c.ids) for c in completions) / (time.perf_counter() - start)
    return {"measured": True, "device": torch.cuda.get_device_name(0), "prompts": prompts, "new_tokens": new_tokens,
            "peer": "HF generate", "tokens_per_s": rates, "speedup": rates["vllm"] / rates["hf"]}


def _launch(folder: Path, name: str, processes: int, steps: int, threads: int, batch_size: int) -> dict:
    from ra3lab.runtime import free_port

    out = folder / f"{name}.json"
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                                          f"--master-port={free_port()}"]
    arguments = [str(value) for value in (out, processes, steps, threads, batch_size)]
    done = subprocess.run([sys.executable, *launcher, "-m", "ra3lab.bench.scaling", *arguments], capture_output=True,
                          text=True, check=False, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode != 0:
        raise RuntimeError(f"the {name} measurement failed: {done.stderr.strip()[-2000:]}")
    return json.loads(out.read_text())


def run(processes: int = 2, steps: int = 30, batch_size: int = 16, cores: int | None = None) -> dict:
    """Tokens/s of next-token training and of the E-step in ``processes`` processes against one, with the same
    global batch; and on a GPU, of generation with vLLM against HF generate (:func:`generation`)."""
    import torch

    cores = cores or os.cpu_count() or 1
    for field, value, least in (("processes", processes, 2), ("steps", steps, 2), ("batch_size", batch_size, 2),
                                ("cores", cores, 1)):
        check(isinstance(value, int) and not isinstance(value, bool) and value >= least, field, value,
              f"must be an integer >= {least}")
    check(batch_size % processes == 0, "batch_size", batch_size, f"must be a multiple of processes = {processes}")
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        one = _launch(folder, "one", 1, steps, cores, batch_size)
        many = _launch(folder, "many", processes, steps, max(1, cores // processes), batch_size)
        loops = {}
        for loop in ("ntp", "estep"):
            weights = [torch.load(result[loop]["weights"]) for result in (one, many)]
            rate_one, rate_many = (result[loop]["tokens"] / result[loop]["seconds"] for result in (one, many))
            loops[loop] = {"tokens_per_s": {"one process": rate_one, f"{processes} processes": rate_many},
                           "speedup": rate_many / rate_one, "efficiency": rate_many / rate_one / processes,
                           "max_abs_weight_diff": max((weights[0][key] - weights[1][key]).abs().max().item()
                                                      for key in weights[0])}
    return {"benchmark": "scaling", "peer": "the same code in one process", "processes": processes, "cores": cores,
            "model": {"hidden": HIDDEN, "layers": LAYERS, "heads": HEADS},
            "ntp": {"what": "next-token training (pre-training, NTP, the M-step)", "steps": steps,
                    "global_batch": batch_size, **loops["ntp"]},
            "estep": {"what": "the E-step (rollouts, scores, q's policy gradient)", **ESTEP, **loops["estep"]},
            "generation": generation()}


if __name__ == "__main__":
    measure(Path(sys.argv[1]), *(int(arg) for arg in sys.argv[2:6]))
