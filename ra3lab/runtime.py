"""Where one run computes and over how many processes: the ``runtime`` block of every model experiment.

``runtime.device`` (auto | cpu | cuda) and ``runtime.dtype`` (auto | fp32 | bf16) place every model a stage builds
or loads (:func:`place`): auto is the first visible GPU of the process (its ``LOCAL_RANK``) or the CPU, and bf16 on a
GPU that supports it, else fp32. ``runtime.compile`` compiles training models (accelerate's dynamo backend, inductor).

One run over several processes is data parallel on Hugging Face accelerate (DDP: every process holds the model,
gradients are averaged; ``runtime.strategy`` fsdp or deepspeed name the accelerate configs shipped in
``slurm/accelerate/``): ``runtime.processes`` per node on ``runtime.nodes`` nodes, started by ``runtime.launcher``
(``accelerate launch`` or ``torchrun``) around ``python -m ra3lab.cli``. Every process runs the whole study; the
training loops split each global batch by rank (:func:`shard`), so the numbers match one process with the same
global batch up to the order of float sums, and the run directory is written by rank 0 alone
(:mod:`ra3lab.execute`). Resuming on another number of processes continues from the same checkpoint: under DDP
the model and optimizer states are the same in every process, and the batches depend only on the seed. FSDP saves
each process's shard (``SHARDED_STATE_DICT``), so a run checkpointed under FSDP resumes only under FSDP over the same
number of processes, and a run checkpointed whole does not resume under FSDP (:func:`check_resumable`).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import torch
from omegaconf import DictConfig

from ra3lab.errors import ConfigError, check, check_choice

DEVICES = ("auto", "cpu", "cuda")
DTYPES = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16}
LAUNCHERS = ("none", "accelerate", "torchrun")
STRATEGIES = ("ddp", "fsdp", "deepspeed")
ACCELERATE_CONFIGS = Path(__file__).resolve().parents[1] / "slurm" / "accelerate"   # <strategy>.yaml
DEFAULT_PORT = 29500
T = TypeVar("T")


def world() -> tuple[int, int, int]:
    """(rank, world size, local rank) of this process, as torchrun and accelerate launch set them; (0, 1, 0) alone."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def _group():
    """torch.distributed, once this process joined the launch's process group."""
    import torch.distributed as dist

    if not dist.is_initialized():
        raise RuntimeError("processes agree once their accelerator joined the launch's process group: call "
                           "accelerator(runtime) first")
    return dist


def from_main(value: T) -> T:
    """Rank 0's ``value`` (any picklable object), told to every process of the launch (a barrier too); ``value``
    itself in a process alone."""
    if world()[1] == 1:
        return value
    told = [value]
    _group().broadcast_object_list(told, src=0)
    return told[0]


def gathered(values: list) -> list:
    """Every process's ``values`` (picklable), concatenated in rank order; ``values`` in a process alone."""
    if world()[1] == 1:
        return values
    parts: list[list] = [[] for _ in range(world()[1])]
    _group().all_gather_object(parts, values)
    return [value for part in parts for value in part]


def summed(tensors: Sequence[torch.Tensor]) -> None:
    """Replace each tensor by its sum over the launch's processes, in place (nothing in a process alone)."""
    if world()[1] > 1:
        dist = _group()
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def barrier() -> None:
    """Wait until every process of the launch is here (nothing in a process alone)."""
    from_main(None)


def processes(runtime: DictConfig) -> int:
    """The processes a run asks for over all its nodes."""
    return int(runtime.processes) * int(runtime.nodes)


def validate(runtime: DictConfig, field: str = "runtime") -> None:
    """ConfigError naming the key and its fix for a runtime block no machine could honour, before any work."""
    check_choice(f"{field}.device", runtime.device, DEVICES)
    check_choice(f"{field}.dtype", runtime.dtype, tuple(DTYPES))
    check_choice(f"{field}.launcher", runtime.launcher, LAUNCHERS)
    check_choice(f"{field}.strategy", runtime.strategy, STRATEGIES)
    for key in ("processes", "nodes"):
        value = runtime[key]
        check(isinstance(value, int) and not isinstance(value, bool) and value >= 1, f"{field}.{key}", value,
              "must be an integer >= 1")
    check(processes(runtime) == 1 or runtime.launcher != "none", f"{field}.launcher", runtime.launcher,
          f"{processes(runtime)} processes need a launcher: runtime.launcher=accelerate (or torchrun)")
    check(runtime.strategy == "ddp" or (runtime.launcher == "accelerate" and runtime.device != "cpu"),
          f"{field}.strategy", runtime.strategy, "FSDP and DeepSpeed are accelerate configs that shard models over "
          "GPUs: runtime.launcher=accelerate on GPUs, or ddp")
    check(runtime.strategy != "fsdp" or not runtime.compile, f"{field}.compile", runtime.compile,
          "torch.compile under FSDP is set in its accelerate config: set runtime.compile=false")


def check_machine(runtime: DictConfig, gpus: int | None = None, field: str = "runtime") -> None:
    """ConfigError naming the key and its fix where the machine the run will execute on cannot honour ``runtime``.
    ``gpus``: GPUs per node there (a SLURM profile's ``gpus_per_node``); None: this machine, which must then
    hold every process (one node)."""
    validate(runtime, field)
    here = gpus is None
    check(not here or runtime.nodes == 1, f"{field}.nodes", runtime.nodes,
          "a run over several nodes is launched by SLURM: add --launcher slurm --profile <yours>")
    gpus = torch.cuda.device_count() if gpus is None else gpus
    where = "this machine has" if here else "the profile's gpus_per_node gives"
    cuda = on_gpus(runtime, gpus)
    check(runtime.device != "cuda" or gpus > 0, f"{field}.device", runtime.device,
          f"{where} no GPU: use runtime.device=auto (or cpu)" + ("" if here else ", or a profile with GPUs"))
    check(not cuda or runtime.processes <= gpus, f"{field}.processes", runtime.processes,
          f"{where} {gpus} GPUs per node: at most one process each")
    check(runtime.strategy == "ddp" or cuda, f"{field}.strategy", runtime.strategy,
          f"{where} no GPU to shard the model over: use runtime.strategy=ddp")
    if runtime.strategy == "deepspeed" and here:
        check(importlib.util.find_spec("deepspeed") is not None, f"{field}.strategy", runtime.strategy,
              "DeepSpeed is not installed here: pip install deepspeed, or use runtime.strategy=fsdp")
    if runtime.dtype == "bf16" and here:
        check(torch.cuda.is_bf16_supported() if cuda else torch.ops.mkldnn._is_mkldnn_bf16_supported(),
              f"{field}.dtype", runtime.dtype, f"this {'GPU' if cuda else 'CPU'} has no bfloat16 support: use "
              "runtime.dtype=fp32 (or auto)")


def on_gpus(runtime: DictConfig, gpus: int) -> bool:
    """Whether ``runtime`` places models on GPUs where ``gpus`` are visible per node."""
    return runtime.device == "cuda" or (runtime.device == "auto" and gpus > 0)


def check_launch(config: DictConfig, gpus: int | None = None) -> None:
    """Every check of a run's config against where it will run, before anything starts: :func:`check_machine`,
    then that FSDP can wrap its model's class and that its ``generation`` backend can run there (vLLM installed,
    on GPUs). ``gpus`` as for :func:`check_machine`. Nothing for a config without a runtime block."""
    if "runtime" not in config:
        return
    check_machine(config.runtime, gpus)
    if config.runtime.strategy == "fsdp":
        check_wrappable(model_class(config.model))
    if "generation" in config:
        from ra3lab.lm.generate import check_generation

        check_generation(config.generation, on_gpus(config.runtime,
                                                     torch.cuda.device_count() if gpus is None else gpus))


def model_class(model: DictConfig) -> type:
    """The transformers class of a run's model: the tiny model's ``model.arch``, or what a named model's config
    says (``architectures``; read from its folder or the local hub cache, nothing downloaded)."""
    from ra3lab.lm.model import ARCHS

    name = model.get("name")
    if name is None:
        return ARCHS[model.get("arch", "llama")][1]
    import transformers

    try:
        architectures = transformers.AutoConfig.from_pretrained(str(name)).architectures or []
    except OSError as error:
        raise ConfigError("model.name", name, f"its config cannot be read here ({error}); download it first, or "
                          "name a local folder") from None
    check(len(architectures) == 1 and hasattr(transformers, architectures[0]), "model.name", name,
          f"its config names the architectures {architectures}, not one transformers class")
    return getattr(transformers, architectures[0])


def check_wrappable(cls: type) -> None:
    """ConfigError unless FSDP's transformer-based wrap (slurm/accelerate/fsdp.yaml) can shard ``cls``: the class
    must name its decoder layer in ``_no_split_modules``."""
    check(bool(getattr(cls, "_no_split_modules", None)), "runtime.strategy", "fsdp",
          f"{cls.__name__} names no decoder layer (_no_split_modules) for FSDP's transformer-based wrap to shard: "
          "use runtime.strategy=deepspeed (ZeRO-3 needs no layer class), or ddp where the model fits one GPU")


def resolve_device(device: str) -> torch.device:
    """The torch device of ``device`` (auto: this process's GPU where one is visible, else the CPU)."""
    if device == "cpu" or (device == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", world()[2] % max(torch.cuda.device_count(), 1))


def resolve_dtype(runtime: DictConfig) -> torch.dtype | None:
    """The dtype models are placed in: bf16 on a GPU that has it for auto; None (keep the model's) otherwise."""
    if runtime.dtype == "auto":
        cuda = resolve_device(runtime.device).type == "cuda"
        return torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else None
    return DTYPES[runtime.dtype]


def place(model, runtime: DictConfig | None, training: bool = False):
    """``model`` moved to the runtime's device, and to its dtype unless ``training`` (a model being trained keeps its
    float32 weights; :func:`accelerator` computes in bf16 under autocast). Unchanged without a runtime block."""
    if runtime is None:
        return model
    dtype = None if training else resolve_dtype(runtime)
    return model.to(device=resolve_device(runtime.device), **({"dtype": dtype} if dtype is not None else {}))


def describe(runtime: DictConfig | None) -> dict:
    """What a run computed on, for its provenance: the processes of the launch, and the strategy, device and dtype its
    models were trained and placed in (only the processes without a runtime block)."""
    if runtime is None:
        return {"processes": world()[1]}
    dtype = resolve_dtype(runtime)
    return {"processes": world()[1], "strategy": runtime.strategy, "device": str(resolve_device(runtime.device)),
            "dtype": "as built" if dtype is None else str(dtype).removeprefix("torch.")}


def check_resumable(before: dict, runtime: DictConfig) -> None:
    """ConfigError naming the key and its fix where ``runtime`` cannot resume checkpoints written under ``before``
    (a run's provenance ``runtime``: its processes and strategy). FSDP checkpoints are one shard per process: they
    resume under FSDP over as many processes; checkpoints saved whole (DDP, DeepSpeed or one process) do not resume
    as FSDP shards. Anything else resumes."""
    was, now = before.get("strategy", "ddp"), runtime.strategy
    if "fsdp" not in (was, now):
        return
    count = int(before.get("processes", 1))
    start_over = "or start the run over with --force"
    saved = "as FSDP shards" if was == "fsdp" else "whole"
    check(was == now, "runtime.strategy", now, f"this run's checkpoints were saved {saved} ({was} over {count} "
          f"processes): resume it with runtime.strategy={was}, {start_over}")
    check(processes(runtime) == count, "runtime.processes", runtime.processes,
          f"this run's checkpoints are FSDP shards of {count} processes: resume it over {count} processes "
          f"(runtime.processes x runtime.nodes), {start_over}")


def shard(rows: Sequence[int]) -> list[int]:
    """This process's share of a global batch ``rows``: every world-size-th row from its rank."""
    rank, size, _ = world()
    return list(rows[rank::size])


def accelerator(runtime: DictConfig | None):
    """The process's :class:`accelerate.Accelerator` for ``runtime``: DDP over the launch's processes (gloo on CPUs),
    bf16 autocast where the runtime's dtype is bf16, models compiled by torch.compile (inductor) where
    ``runtime.compile``; one process on the CPU without a runtime block."""
    if runtime is None:
        return _accelerator(True, "no", "no")
    cpu = resolve_device(runtime.device).type == "cpu"
    return _accelerator(cpu, "bf16" if resolve_dtype(runtime) == torch.bfloat16 else "no",
                        "inductor" if runtime.compile else "no")


@functools.cache
def _accelerator(cpu: bool, mixed_precision: str, dynamo_backend: str):
    from accelerate import Accelerator

    return Accelerator(cpu=cpu, mixed_precision=mixed_precision, dynamo_backend=dynamo_backend)


def free_port() -> int:
    """A TCP port free on this machine now: where a launch on one machine meets, so that two launches do not."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_command(runtime: DictConfig, argv: Sequence[str], node_rank: str = "0", master_addr: str = "127.0.0.1",
                   master_port: str = str(DEFAULT_PORT)) -> list[str]:
    """The command that starts this node's processes of a run: ``runtime.launcher`` around
    ``python -m ra3lab.cli <argv>``. The launcher sets no precision: each process's :func:`accelerator` takes it
    from the runtime, on the node it runs on. On SLURM, ``node_rank``, ``master_addr`` and ``master_port`` are shell
    expressions (``$SLURM_NODEID`` ...) the job script expands on each node."""
    nodes, per_node = int(runtime.nodes), int(runtime.processes)
    module = ["-m", "ra3lab.cli", *argv]
    if runtime.launcher == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", f"--nnodes={nodes}", f"--nproc-per-node={per_node}",
                f"--node-rank={node_rank}", f"--master-addr={master_addr}", f"--master-port={master_port}", *module]
    strategy = ACCELERATE_CONFIGS / f"{runtime.strategy}.yaml"
    config = [] if runtime.strategy == "ddp" else ["--config_file", str(strategy)]
    mode = ["--multi_gpu"] if runtime.strategy == "ddp" else []    # accelerate's torchrun launcher, CPUs included
    return [sys.executable, "-m", "accelerate.commands.launch", *config, *mode, "--mixed_precision=no",
            "--dynamo_backend=no", f"--num_processes={nodes * per_node}", f"--num_machines={nodes}",
            f"--machine_rank={node_rank}", f"--main_process_ip={master_addr}", f"--main_process_port={master_port}",
            *module]
