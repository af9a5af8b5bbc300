"""`ra3lab bench scaling`: next-token training (what pre-training, NTP and the M-step run) in one launch of
``processes`` processes (DDP on accelerate: gloo on this machine's CPUs) against the same code in one process.

Both train the same tiny model on the same programs with the same global batch, so every step does the same work
and the weights should agree (their largest difference is reported). Each configuration gets the machine's
``cores``: the one process ``cores`` torch threads, each of the P processes ``cores / P``. Units: ``tokens_per_s``
is the training tokens (steps x global batch x the programs' mean length in tokens) over the training loop's wall
time (model building and the launch excluded);
``speedup`` = the launch's rate / one process's; ``efficiency`` = speedup / P (1: perfect scaling).

On a machine with a GPU and vLLM it also reports generation: tokens/s of sampling completions of CodeWorld tasks
from the same tiny model (bf16) with vLLM against HF generate (the peer), in the same run (:func:`generation`).

Run as a module (``python -m ra3lab.bench.scaling <out.json> <processes> <steps> <threads>``) it is one process
of a measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ra3lab.errors import check

HIDDEN, LAYERS, HEADS = 128, 4, 4
PROGRAMS = 400


def measure(out: Path, processes: int, steps: int, threads: int, batch_size: int) -> None:
    """One process of a measurement: train, and (rank 0) write seconds, tokens and the weights' path to ``out``."""
    import torch
    from omegaconf import OmegaConf

    from ra3lab.lm import LineCodec, build_model, train_ntp
    from ra3lab.runtime import world

    torch.set_num_threads(threads)
    tokenizer, programs = corpus()
    codec = LineCodec(tokenizer)
    sequences = [codec.encode_lines(lines)[0] + [codec.eos_id] for lines in programs]
    model = build_model(tokenizer, hidden=HIDDEN, layers=LAYERS, heads=HEADS, seed=0)
    runtime = OmegaConf.create({"device": "cpu", "dtype": "fp32", "compile": False, "strategy": "ddp", "nodes": 1,
                                "launcher": "torchrun" if processes > 1 else "none", "processes": processes})
    tokens = steps * batch_size * sum(map(len, sequences)) / len(sequences)     # in expectation over the batches
    start = time.perf_counter()
    train_ntp(model, sequences, steps=steps, batch_size=batch_size, lr=1e-3, runtime=runtime)
    seconds = time.perf_counter() - start
    if world()[0] == 0:
        weights = out.with_suffix(".pt")
        torch.save(model.state_dict(), weights)
        out.write_text(json.dumps({"seconds": seconds, "tokens": tokens, "weights": str(weights)}))


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
    """Tokens/s of next-token training in ``processes`` processes against one, with the same global batch; and on
    a GPU, of generation with vLLM against HF generate (:func:`generation`)."""
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
        weights = [torch.load(result["weights"]) for result in (one, many)]
    rate_one, rate_many = one["tokens"] / one["seconds"], many["tokens"] / many["seconds"]
    return {"benchmark": "scaling", "what": "next-token training (pre-training, NTP, the M-step)",
            "peer": "the same code in one process", "processes": processes, "cores": cores, "steps": steps,
            "global_batch": batch_size, "model": {"hidden": HIDDEN, "layers": LAYERS, "heads": HEADS},
            "tokens_per_s": {"one process": rate_one, f"{processes} processes": rate_many},
            "speedup": rate_many / rate_one, "efficiency": rate_many / rate_one / processes,
            "max_abs_weight_diff": max((weights[0][key] - weights[1][key]).abs().max().item() for key in weights[0]),
            "generation": generation()}


if __name__ == "__main__":
    measure(Path(sys.argv[1]), *(int(arg) for arg in sys.argv[2:6]))
