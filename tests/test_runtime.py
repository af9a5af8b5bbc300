"""One run over several processes: the runtime block's checks, the launcher command lines, next-token training
under DDP against one process with the same global batch, and a staged run launched over 2 CPU processes."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file
from test_rlvr import parity_task

from ra3lab import runtime
from ra3lab.cli import main
from ra3lab.errors import ConfigError
from ra3lab.sweep.job import check_span

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = OmegaConf.load(ROOT / "experiments" / "common" / "runtime.yaml")
TRAIN = textwrap.dedent("""
    import sys, torch
    from omegaconf import OmegaConf
    from ra3lab.lm import build_model, train_ntp, train_tokenizer
    from ra3lab.runtime import world
    lines = [f"x{i} = {i} + y * {i % 7}" for i in range(60)]
    tokenizer = train_tokenizer(lines, vocab_size=300)
    sequences = [tokenizer(line)["input_ids"] + [tokenizer.eos_token_id] for line in lines]
    model = build_model(tokenizer, hidden=32, layers=2, heads=2, seed=0)
    losses = train_ntp(model, sequences, steps=12, batch_size=8, lr=1e-2, runtime=OmegaConf.load(sys.argv[2]))
    if world()[0] == 0:
        torch.save({"weights": model.state_dict(), "losses": losses}, sys.argv[1])
""")


def block(**changes) -> OmegaConf:
    return OmegaConf.merge(DEFAULT, changes)


@pytest.mark.parametrize(("changes", "field"), [
    ({"processes": 2}, "runtime.launcher"),                                      # several processes, no launcher
    ({"processes": 0, "launcher": "torchrun"}, "runtime.processes"),
    ({"device": "tpu"}, "runtime.device"),
    ({"dtype": "fp16"}, "runtime.dtype"),
    ({"strategy": "fsdp", "launcher": "torchrun", "processes": 2}, "runtime.strategy"),   # an accelerate config
    ({"strategy": "fsdp", "launcher": "accelerate", "compile": True, "device": "cuda"}, "runtime.compile"),
])
def test_a_runtime_no_machine_could_honour_is_refused_by_its_key(changes, field):
    with pytest.raises(ConfigError) as error:
        runtime.validate(block(**changes))
    assert error.value.field == field


def test_this_machine_refuses_what_it_lacks_and_a_profile_what_it_does_not_give():
    with pytest.raises(ConfigError) as error:                                    # one node here: SLURM spans more
        runtime.check_machine(block(nodes=2, processes=1, launcher="torchrun"))
    assert error.value.field == "runtime.nodes"
    if not torch.cuda.is_available():
        for changes, field in (({"device": "cuda"}, "runtime.device"),
                               ({"strategy": "fsdp", "launcher": "accelerate"}, "runtime.strategy")):
            with pytest.raises(ConfigError) as error:
                runtime.check_machine(block(**changes))
            assert error.value.field == field
    runtime.check_machine(block(processes=8, nodes=2, launcher="accelerate", device="cuda"), gpus=8)   # a GPU node
    profile = {"name": "gpu", "partition": "gpu", "gpus_per_node": 8, "nodes": 2}
    config = OmegaConf.create({"runtime": block(processes=8, nodes=2, launcher="accelerate")})
    assert check_span(config, profile) == 2
    for runtime_changes, profile_changes, field in (
            ({"nodes": 4}, {}, "runtime.nodes"),                                   # more nodes than the profile allows
            ({"processes": 9}, {}, "runtime.processes"),                           # more processes than GPUs
            ({"processes": 3}, {"gpus_per_node": None, "cpus_per_task": 2}, "runtime.processes")):   # than cores
        config = OmegaConf.create({"runtime": block(launcher="accelerate", **{"nodes": 2, **runtime_changes})})
        with pytest.raises(ConfigError) as error:
            check_span(config, {**profile, **profile_changes})
        assert error.value.field == field


def test_fsdp_refuses_a_model_class_that_names_no_layer_to_shard(tmp_path):
    from transformers import LlamaForCausalLM

    from ra3lab.lm import build_model, train_tokenizer

    class Unsplittable(LlamaForCausalLM):
        _no_split_modules = None

    runtime.check_wrappable(LlamaForCausalLM)
    with pytest.raises(ConfigError, match="deepspeed") as error:
        runtime.check_wrappable(Unsplittable)
    assert error.value.field == "runtime.strategy"
    build_model(train_tokenizer(["x = 1"] * 4, vocab_size=300), hidden=32, layers=1, heads=2).save_pretrained(tmp_path)
    assert runtime.model_class(OmegaConf.create({"name": str(tmp_path)})) is LlamaForCausalLM   # read off its config
    assert runtime.model_class(OmegaConf.create({"name": None, "arch": "qwen2"})).__name__ == "Qwen2ForCausalLM"
    with pytest.raises(ConfigError) as error:
        runtime.model_class(OmegaConf.create({"name": str(tmp_path / "absent")}))
    assert error.value.field == "model.name"


def test_a_generation_backend_that_cannot_run_there_is_refused_before_launch(tmp_path, monkeypatch, capsys):
    from ra3lab.lm.generate import check_generation

    generation = OmegaConf.load(ROOT / "experiments" / "common" / "generation.yaml")
    check_generation(generation, cuda=False)                                     # hf runs anywhere
    for changes, field in (({"backend": "sglang"}, "generation.backend"),
                           ({"vllm_mode": "remote"}, "generation.vllm_mode"),
                           ({"gpu_memory_utilization": 1.5}, "generation.gpu_memory_utilization")):
        with pytest.raises(ConfigError) as error:
            check_generation(OmegaConf.merge(generation, changes), cuda=True)
        assert error.value.field == field
    if importlib.util.find_spec("vllm") is None:
        monkeypatch.setenv("RA3LAB_RUNS", str(tmp_path))
        assert main(["run", "ra3_corpus", "--quick", "generation.backend=vllm", "--dry-run", "--json"]) == 2
        answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert answer["field"] == "generation.backend" and "ra3lab[gpu]" in answer["error"]
        assert not any(tmp_path.iterdir())                                       # nothing prepared


@pytest.mark.parametrize(("before", "now", "field"), [
    ({"strategy": "fsdp", "processes": 16}, {"strategy": "fsdp", "processes": 8, "nodes": 2}, None),   # same shards
    ({"strategy": "fsdp", "processes": 16}, {"strategy": "fsdp", "processes": 8}, "runtime.processes"),
    ({"strategy": "fsdp", "processes": 8}, {"strategy": "ddp", "processes": 8}, "runtime.strategy"),
    ({"strategy": "ddp", "processes": 2}, {"strategy": "fsdp", "processes": 2}, "runtime.strategy"),     # saved whole
    ({"strategy": "ddp", "processes": 2}, {"strategy": "ddp", "processes": 1}, None),         # DDP resumes anywhere
    ({"processes": 1}, {"strategy": "deepspeed", "processes": 4}, None),                      # a run before strategies
])
def test_fsdp_checkpoints_resume_only_as_the_shards_they_were_saved_as(before, now, field):
    resuming = block(launcher="accelerate", device="cuda", **now)
    if field is None:
        runtime.check_resumable(before, resuming)
        return
    with pytest.raises(ConfigError, match="--force") as error:
        runtime.check_resumable(before, resuming)
    assert error.value.field == field


def test_a_run_checkpointed_as_fsdp_shards_is_refused_elsewhere_before_it_starts_and_loses_nothing(
        tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RA3LAB_RUNS", str(tmp_path))
    command = ["run", "pretrain", "--quick", "pretrain.steps=4", "--json"]
    assert main([*command, "--dry-run"]) == 0
    run_dir = Path(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"])
    run_dir.mkdir(parents=True)
    provenance = {"runtime": {"processes": 8, "strategy": "fsdp", "device": "cuda:0", "dtype": "bfloat16"}}
    (run_dir / "provenance.json").write_text(json.dumps(provenance))
    assert main(command) == 0                                     # nothing saved yet: nothing to resume, it runs
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"] == str(run_dir)
    (run_dir / "summary.json").unlink()
    (run_dir / "provenance.json").write_text(json.dumps(provenance))
    (run_dir / "checkpoint.json").write_text(json.dumps({"metric_lines": 0, "maps": {}}))
    assert main(command) == 2
    answer = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert answer["field"] == "runtime.strategy" and "runtime.strategy=fsdp" in answer["error"]
    assert (run_dir / "checkpoint.json").exists() and not (run_dir / "summary.json").exists()   # untouched
    assert json.loads((run_dir / "provenance.json").read_text()) == provenance
    assert main([*command, "--force"]) == 0                        # starting over is the other fix
    assert json.loads((run_dir / "provenance.json").read_text())["runtime"]["strategy"] == "ddp"


def test_launch_commands_rendezvous_at_the_first_node_with_every_process_counted():
    two_nodes = block(processes=8, nodes=2, launcher="accelerate", device="cuda")
    command = runtime.launch_command(two_nodes, ["run", "ra3_corpus"], "$SLURM_NODEID", "node01", "20042")
    assert command[1:3] == ["-m", "accelerate.commands.launch"] and "--multi_gpu" in command
    assert {"--num_processes=16", "--num_machines=2", "--machine_rank=$SLURM_NODEID", "--main_process_ip=node01",
            "--main_process_port=20042"} <= set(command)
    assert command[-4:] == ["-m", "ra3lab.cli", "run", "ra3_corpus"]
    fsdp = runtime.launch_command(block(**{**two_nodes, "strategy": "fsdp"}), ["run", "x"])
    assert fsdp[fsdp.index("--config_file") + 1] == str(ROOT / "slurm" / "accelerate" / "fsdp.yaml")
    assert Path(fsdp[fsdp.index("--config_file") + 1]).is_file() and "--multi_gpu" not in fsdp
    torchrun = runtime.launch_command(block(processes=2, launcher="torchrun"), ["run", "x"], "1", "node01", "29600")
    assert torchrun[1:3] == ["-m", "torch.distributed.run"]
    assert {"--nnodes=1", "--nproc-per-node=2", "--node-rank=1", "--master-addr=node01"} <= set(torchrun)


def launched(tmp_path: Path, script: str, processes: int, *arguments: str) -> dict:
    """What ``script`` saved (rank 0) to the path it is given first, run alone or launched over ``processes`` with
    torchrun; its second argument is a runtime block of that many CPU processes, then ``arguments``."""
    name = f"{hashlib.sha1(script.encode()).hexdigest()[:8]}-{processes}"
    path, config, out = tmp_path / f"{name}.py", tmp_path / f"{name}.yaml", tmp_path / f"{name}.pt"
    path.write_text(script)
    OmegaConf.save(block(device="cpu", processes=processes, launcher="torchrun"), config)
    launcher = [] if processes == 1 else ["-m", "torch.distributed.run", f"--nproc-per-node={processes}",
                                          f"--master-port={runtime.free_port()}"]
    done = subprocess.run([sys.executable, *launcher, str(path), str(out), str(config), *arguments], cwd=ROOT,
                          check=False, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return torch.load(out)


def test_two_processes_train_as_one_with_the_same_global_batch(tmp_path):
    one, two = launched(tmp_path, TRAIN, 1), launched(tmp_path, TRAIN, 2)
    assert two["losses"] == pytest.approx(one["losses"], rel=1e-5)
    for key, weight in one["weights"].items():
        torch.testing.assert_close(two["weights"][key], weight, rtol=0, atol=1e-5)
    moved = max((one["weights"][key] - trained_start).abs().max().item()        # and training moved the weights
                for key, trained_start in initial_weights().items())
    assert moved > 1e-2


def initial_weights() -> dict:
    from ra3lab.lm import build_model, train_tokenizer

    lines = [f"x{i} = {i} + y * {i % 7}" for i in range(60)]
    return build_model(train_tokenizer(lines, vocab_size=300), hidden=32, layers=2, heads=2, seed=0).state_dict()


GRPO = textwrap.dedent("""
    import sys
    from pathlib import Path
    import torch
    from omegaconf import OmegaConf
    from safetensors.torch import load_file
    from ra3lab.codeworld import CodeWorld
    from ra3lab.evaluation import EvalConfig, SandboxPool
    from ra3lab.rlvr import RLVRConfig, train_rlvr
    from ra3lab.runtime import world
    out, runtime, checkpoint = Path(sys.argv[1]), OmegaConf.load(sys.argv[2]), sys.argv[3]
    tasks = CodeWorld(n_skills=4, skills_per_program=(1, 2), lines_per_skill=(2, 3), seed=0)
    config = RLVRConfig(steps=2, group_size=2, prompts_per_step=4, lr=1e-3, temperature=0.7, max_new_tokens=40,
                        eval_every=2, save_every=2)
    with SandboxPool(workers=1) as pool:
        result = train_rlvr(checkpoint, tasks.tasks(16, "train", seed=1), tasks.tasks(4, "heldout", seed=1), config,
                            out.parent / f"{out.stem}-rank{world()[0]}", pool, eval=EvalConfig(n=2, k=(1,), seed=5),
                            runtime=runtime)
    if world()[0] == 0:
        torch.save({"weights": load_file(Path(result["model_dir"]) / "model.safetensors"),
                    "history": result["history"]}, out)
""")


def pretrained_checkpoint(path: Path) -> Path:
    """A tiny Llama pre-trained on CodeWorld programs, so that some rollouts pass and GRPO has a gradient."""
    from ra3lab.codeworld import CodeWorld
    from ra3lab.lm import LineCodec, build_model, train_ntp, train_tokenizer

    programs = CodeWorld(n_skills=4, skills_per_program=(1, 2), lines_per_skill=(2, 3), seed=0).sample(200, "train",
                                                                                                      seed=0)
    tokenizer = train_tokenizer([line for program in programs for line in program.lines()], vocab_size=400)
    codec = LineCodec(tokenizer)
    model = build_model(tokenizer, hidden=64, layers=2, heads=4)
    train_ntp(model, [codec.encode_lines(p.lines())[0] + [codec.eos_id] for p in programs], steps=150,
              batch_size=16, lr=3e-3)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.mark.slow
def test_grpo_over_two_processes_follows_one_process_with_the_same_global_batch(tmp_path):
    """Two GRPO steps (TRL under torchrun, gloo): the rollouts' rewards, the held-out evaluations and the trained
    weights of 2 processes, each rolling out half of every step's 8 completions, match 1 process's."""
    checkpoint = pretrained_checkpoint(tmp_path / "checkpoint")
    one, two = (launched(tmp_path, GRPO, processes, str(checkpoint)) for processes in (1, 2))
    rewards = [row["rlvr/reward_mean"] for row in one["history"] if "rlvr/reward_mean" in row]
    assert len(rewards) == 2 and 0 < sum(rewards) < 2                           # rewards that differ: a gradient
    for row_one, row_two in zip(one["history"], two["history"], strict=True):
        assert row_two.keys() == row_one.keys()
        for key in (k for k in row_one if k.startswith(("rlvr/", "eval/")) and not k.endswith("_s")):   # not times
            assert row_two[key] == pytest.approx(row_one[key], rel=1e-5), key
    start = load_file(checkpoint / "model.safetensors")
    assert max((one["weights"][key] - start[key]).abs().max().item() for key in start) > 1e-4    # GRPO moved them
    for key, weight in one["weights"].items():
        torch.testing.assert_close(two["weights"][key], weight, rtol=0, atol=1e-5)


ESTEP = textwrap.dedent("""
    import sys
    import torch
    from omegaconf import OmegaConf
    from ra3lab.codeworld import CodeWorld
    from ra3lab.lm import LineCodec, build_model, train_tokenizer
    from ra3lab.ra3.estep import Corpus, EStepConfig, e_step
    from ra3lab.runtime import accelerator, world
    accelerator(OmegaConf.load(sys.argv[2]))                  # joins the launch's process group
    programs = CodeWorld(comment_fraction=0.2).sample(40, seed=0)
    tokenizer = train_tokenizer([line for program in programs for line in program.lines()], vocab_size=300)
    snippets = [program.lines(comments=False) for program in programs[:12]]
    corpus = Corpus(snippets, [[t >= 2 for t in range(len(s))] for s in snippets])
    config = EStepConfig(steps=3, snippets_per_step=5, group_size=3, max_thought_tokens=4, lr=3e-3)
    seen = []
    q = e_step(build_model(tokenizer, hidden=32, layers=2, heads=2, seed=0), LineCodec(tokenizer), corpus, config,
               c=0.01, seed=0, log=lambda step, metrics: seen.append(metrics))
    if world()[0] == 0:
        torch.save({"weights": q.state_dict(), "metrics": seen}, sys.argv[1])
""")


@pytest.mark.slow
def test_the_e_step_over_two_processes_follows_one_process(tmp_path):
    """Three E-steps of 5 snippets x 3 rollouts: 2 processes (3 and 2 snippets each) give q's weights and the
    step metrics of 1 process."""
    one, two = launched(tmp_path, ESTEP, 1), launched(tmp_path, ESTEP, 2)
    assert sum(metrics["rate"] for metrics in one["metrics"]) > 0                     # q thought: a gradient
    for metrics_one, metrics_two in zip(one["metrics"], two["metrics"], strict=True):
        assert metrics_two == pytest.approx(metrics_one, rel=1e-4, abs=1e-6)
    start = initial_estep_weights()
    assert max((one["weights"][key] - start[key]).abs().max().item() for key in start) > 1e-4   # q moved
    for key, weight in one["weights"].items():
        torch.testing.assert_close(two["weights"][key], weight, rtol=0, atol=1e-5)


def initial_estep_weights() -> dict:
    from ra3lab.codeworld import CodeWorld
    from ra3lab.lm import build_model, train_tokenizer

    programs = CodeWorld(comment_fraction=0.2).sample(40, seed=0)
    tokenizer = train_tokenizer([line for program in programs for line in program.lines()], vocab_size=300)
    return build_model(tokenizer, hidden=32, layers=2, heads=2, seed=0).state_dict()


@pytest.mark.slow
def test_a_staged_run_over_two_processes_matches_one_process_and_is_written_once(tmp_path, monkeypatch, capsys):
    base = ["run", "pretrain", "--quick", "pretrain.steps=20", "--json"]
    results = {}
    for name, extra in (("one", []), ("two", ["runtime.launcher=torchrun", "runtime.processes=2"])):
        monkeypatch.setenv("RA3LAB_RUNS", str(tmp_path / name))
        assert main([*base, *extra]) == 0
        results[name] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    one, two = (Path(results[name]["run_dir"]) for name in ("one", "two"))
    assert one.name == two.name and results["two"]["processes"] == 2       # the runtime is not part of the run id
    weights = [load_file(run / "model" / "model.safetensors") for run in (one, two)]
    for key, weight in weights[0].items():
        torch.testing.assert_close(weights[1][key], weight, rtol=0, atol=1e-5)
    assert json.loads((two / "provenance.json").read_text())["runtime"]["processes"] == 2
    assert not any((tmp_path / "two" / ".ranks").rglob("summary.json"))   # rank 1's replica is gone
    monkeypatch.setenv("RA3LAB_RUNS", str(tmp_path / "two"))               # done: both processes reuse it
    assert main([*base, "runtime.launcher=torchrun", "runtime.processes=2"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["wall_time_s"] == results["two"]["wall_time_s"]


def numbers(summary: dict, prefix: str = "") -> dict:
    """Every number of a (nested) summary by its path, timings left out."""
    found = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            found.update(numbers(value, f"{prefix}{key}/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and "time" not in key:
            found[prefix + key] = value
    return found


@pytest.mark.slow
def test_ra3_corpus_recomputed_over_two_accelerate_processes_gives_the_numbers_of_one(tmp_path, monkeypatch, capsys):
    """The README's 2-process command at a smaller scale: the whole study in 1 process, then its RA3 arm (E-step,
    infusion, M-step and evaluation) recomputed over 2 accelerate processes from the same base model gives every
    number of the summary again. (From separately pre-trained bases the weights differ by float rounding, ~1e-7,
    and a sampled thought can then come out otherwise: README, "One run over several processes".)"""
    command = ["run", "ra3_corpus", "--quick", "pretrain.steps=40", "corpus.max_files=60", "corpus.train_snippets=40",
               "corpus.heldout_snippets=8", "midtrain.steps_per_round=10", "eval.limit=4", "eval.n=2", "eval.k=[1]",
               "threads=1", "--json"]
    monkeypatch.setenv("RA3LAB_RUNS", str(tmp_path / "one"))
    assert main(command) == 0
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    recomputed = [path.parent for stage in ("midtrain", "evaluate", "ra3_corpus")
                  for path in (tmp_path / "two" / stage).glob("*/config.yaml")
                  if stage == "ra3_corpus" or OmegaConf.load(path).arm.startswith("ra3")]
    assert len(recomputed) == 3
    for run_dir in recomputed:
        shutil.rmtree(run_dir)
    monkeypatch.setenv("RA3LAB_RUNS", str(tmp_path / "two"))
    assert main([*command, "runtime.launcher=accelerate", "runtime.processes=2"]) == 0
    two = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert Path(two["run_dir"]).name == Path(one["run_dir"]).name and two["processes"] == 2
    for run_dir in recomputed:
        assert json.loads((run_dir / "provenance.json").read_text())["runtime"]["processes"] == 2
    assert one["arms"]["ra3_c0.05"]["infused_rate"] > 0                        # q wrote thoughts into the corpus
    expected, found = numbers(one["arms"]), numbers(two["arms"])
    assert found.keys() == expected.keys()
    for key, value in expected.items():
        assert found[key] == pytest.approx(value, rel=1e-4, abs=1e-6), key


@pytest.mark.slow
def test_a_two_process_run_killed_mid_grpo_resumes_in_one_process_from_its_checkpoint(tmp_path):
    """The rlvr stage over 2 processes, killed (SIGKILL to the command, its launcher and both processes, as a
    cancelled job is) once GRPO saved its first checkpoint, then launched again in 1 process: it goes on from that
    checkpoint (steps 2 and 3 only) and ends with the weights of the same run computed over 2 processes without a
    stop."""
    tasks = tmp_path / "parity.jsonl"                      # rewards of 0 and 1 from any model: GRPO moves the weights
    tasks.write_text("".join(json.dumps(parity_task(index)) + "\n" for index in range(8)))
    command = [sys.executable, "-m", "ra3lab.cli", "run", "rlvr", "--quick", "pretrain.steps=20", "data.pretrain=100",
               "midtrain.steps_per_round=5", f"tasks.train_file={tasks}", f"tasks.heldout_file={tasks}",
               "rlvr.max_new_tokens=12", "rlvr_eval.max_new_tokens=12", "rlvr.steps=3", "rlvr.save_every=1",
               "rlvr.eval_every=3", "rlvr_eval.n=2", "rlvr.lr=1e-3", "runtime.launcher=torchrun",
               "runtime.processes=2", "--json"]
    env = {**os.environ, "RA3LAB_RUNS": str(tmp_path)}
    first = subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 900
    while not list(tmp_path.glob("rlvr/*/rlvr/checkpoint-1/trainer_state.json")):
        assert first.poll() is None and time.monotonic() < deadline, "no checkpoint before the run ended"
        time.sleep(1)
    launcher = psutil.Process(first.pid)
    processes = [*launcher.children(recursive=True), launcher]             # torchrun's workers have their own session
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):                      # a short-lived child may be gone already
            process.kill()
    psutil.wait_procs(processes, timeout=30)
    first.wait()
    [run_dir] = tmp_path.glob("rlvr/*")
    assert not (run_dir / "summary.json").exists()
    alone = [arg for arg in command if not arg.startswith("runtime.")]      # resumed in 1 process: the same run
    again = subprocess.run(alone, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    steps = re.findall(r"rlvr ntp seed 0: step (\d+):", again.stderr)
    assert steps[-1] == "3" and "1" not in steps, steps                       # resumed, not started over
    resumed = load_file(run_dir / "rlvr" / "final" / "model.safetensors")
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any(row.get("rlvr/grad_norm", 0) > 0 for row in rows)              # GRPO had a gradient
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert summary["steps"] == 3 and summary["reward_steps"] == [1, 2, 3] and summary["curve_steps"] == [0, 3]
    whole = subprocess.run([*command, "--force"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900,
                           check=False)
    assert whole.returncode == 0, whole.stderr[-3000:]
    for key, weight in load_file(run_dir / "rlvr" / "final" / "model.safetensors").items():
        torch.testing.assert_close(resumed[key], weight, rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.xdist_group("slurm")
def test_a_run_over_two_processes_is_one_slurm_job_that_launches_them(slurm_cluster, isolated_runs, capsys):
    staged = ["run", "pretrain", "--quick", "pretrain.steps=20", "--json"]
    assert main(staged) == 0                                                      # one process, here
    alone = Path(json.loads(capsys.readouterr().out.strip().splitlines()[-1])["run_dir"])
    launched = ["run", "pretrain", "--quick", "pretrain.steps=20", "runtime.launcher=torchrun", "runtime.processes=2",
                "--force", "--launcher", "slurm", "--profile", "localhost", "--slurm", "cpus_per_task=2", "mem=4",
                "time=8", "--timeout", "480", "--json"]
    weights = load_file(alone / "model" / "model.safetensors")
    assert main(launched) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["run_dir"] == str(alone) and summary["slurm_job_id"]           # the same run, recomputed in a job
    provenance = json.loads((alone / "provenance.json").read_text())
    assert provenance["runtime"]["processes"] == 2 and provenance["slurm_job_id"] == summary["slurm_job_id"]
    for key, weight in load_file(alone / "model" / "model.safetensors").items():
        torch.testing.assert_close(weight, weights[key], rtol=0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.cluster
@pytest.mark.xdist_group("slurm")
def test_an_ra3_arm_and_grpo_over_two_processes_in_a_slurm_job_give_the_numbers_of_one(
        slurm_cluster, isolated_runs, tmp_path, capsys):
    """One E-step round, infusion, the M-step and two GRPO steps from an RA3 arm, first in 1 process here, then
    recomputed over 2 processes in one SLURM job (srun starts the profile's launcher) from the same base: the same
    arm weights and final weights (to 1e-4), rewards and held-out pass rates."""
    tasks = tmp_path / "parity.jsonl"                      # rewards of 0 and 1 from any model: GRPO moves the weights
    tasks.write_text("".join(json.dumps(parity_task(index)) + "\n" for index in range(8)))
    command = ["run", "rlvr", "--quick", "arm=ra3_c0.05", "pretrain.steps=20", "data.pretrain=100",
               "midtrain.steps_per_round=5", "estep.steps=1", f"tasks.train_file={tasks}",
               f"tasks.heldout_file={tasks}", "rlvr.max_new_tokens=12", "rlvr_eval.max_new_tokens=12", "rlvr.steps=2",
               "rlvr.eval_every=2", "rlvr_eval.n=2", "rlvr.lr=1e-3", "--json"]
    assert main(command) == 0                                                     # one process, here
    one = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    [arm] = isolated_runs.glob("midtrain/*/checkpoints/ra3_c0.05")
    arm_weights = load_file(arm / "round_0" / "model.safetensors")
    grpo_weights = load_file(Path(one["run_dir"]) / "rlvr" / "final" / "model.safetensors")
    for run_dir in (arm.parents[1], Path(one["run_dir"])):                        # recomputed from the same base
        shutil.rmtree(run_dir)
    launched = [*command, "runtime.launcher=torchrun", "runtime.processes=2", "--launcher", "slurm", "--profile",
                "localhost", "--slurm", "cpus_per_task=2", "mem=4", "time=10", "--timeout", "600"]
    assert main(launched) == 0
    two = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert two["run_dir"] == one["run_dir"] and two["slurm_job_id"]
    for run_dir in (arm.parents[1], Path(one["run_dir"])):
        provenance = json.loads((run_dir / "provenance.json").read_text())
        assert provenance["runtime"]["processes"] == 2 and provenance["slurm_job_id"] == two["slurm_job_id"]
    assert json.loads((arm / "round_0" / "metrics.json").read_text())["infused"]["rate"] > 0   # q thought
    for expected, path in ((arm_weights, arm / "round_0"), (grpo_weights, Path(one["run_dir"]) / "rlvr" / "final")):
        for key, weight in load_file(path / "model.safetensors").items():           # AdamW turns rounding in a
            torch.testing.assert_close(weight, expected[key], rtol=0, atol=1e-4)   # ~0 gradient into a step
    for key in ("rewards", "curve"):
        assert two[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), key


@pytest.mark.slow
def test_bench_scaling_sets_two_processes_against_one_with_the_same_weights():
    from ra3lab.bench.scaling import run

    report = run(processes=2, steps=4, batch_size=8)
    assert report["peer"] == "the same code in one process"
    for loop in ("ntp", "estep"):                                                # the M-step's loop and the E-step
        assert report[loop]["max_abs_weight_diff"] < 1e-5, loop
        rates = report[loop]["tokens_per_s"]
        assert set(rates) == {"one process", "2 processes"} and all(rate > 0 for rate in rates.values())
        assert report[loop]["efficiency"] == pytest.approx(report[loop]["speedup"] / 2)
    generation = report["generation"]                                            # HF generate against vLLM: GPUs only
    assert generation["measured"] == torch.cuda.is_available() and (generation["measured"] or generation["why"])
