"""Hugging Face transformers on one configuration that esft-bench-steps measures, for its side-by-side columns.

Builds the family's transformers model from the same config.json keys, with transformers' own random
initialisation, and measures one kind of step, as the median tokens/s of --repeat steps after one warm-up, on the
same batch, sequence length, dtype, device and thread count as esft:

  stats    the routing statistics pass as the ESFT reference collects it: a forward without gradients that returns
           every layer's router logits (output_router_logits=True)
  esft     a training step with only --esft-experts routed experts per layer trainable: transformers keeps each
           layer's experts in fused [E, ...] tensors, so those tensors train and a gradient hook zeroes the rows of
           the other experts; everything else is frozen (AdamW's weight decay still moves the masked rows: a correct
           ESFT in transformers would also restore them, work this benchmark leaves out in transformers' favour)
  experts  a training step with every routed expert trainable, everything else frozen
  full     a training step with every parameter trainable
  lora     a training step with PEFT's LoRA (rank 8, alpha 16) on every linear layer but lm_head, named one by one
  lora-experts  the same plus the routers' weights and one pair per routed expert (PEFT's target_parameters)

Started by torchrun (WORLD_SIZE above 1), a training mode runs data parallel as transformers' Trainer does: the
model wrapped in torch's DistributedDataParallel (Gloo on the CPU, NCCL on GPUs, one per process), each rank a
contiguous share of the --batch rows, which stays the global batch; rank 0 prints the whole group's rate.

A training step is what transformers' Trainer does by default: forward with labels, backward, clip_grad_norm_(1.0),
torch.optim.AdamW with fused=True (the Trainer's default optimizer, adamw_torch_fused), zero_grad(set_to_none=True).
Prints one JSON line with the rate, the peak memory (peak resident set on the CPU, the CUDA allocator's peak on a
GPU), the trainable parameter count and the optimizer state bytes.

usage: hf_steps.py --config CONFIG.json --mode stats|esft|experts|full|lora|lora-experts --batch B --seq T [--repeat R]
                   [--device cpu|cuda] [--dtype float32|bfloat16] [--threads N] [--esft-experts N]
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, CONFIG_MAPPING


def routed_expert_tensor(name):
    return ".mlp.experts." in name


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--mode", required=True, choices=["stats", "esft", "experts", "full", "lora", "lora-experts"])
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--esft-experts", type=int, default=13)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), int(os.environ.get("RANK", "0"))
    if world > 1:
        if a.mode == "stats":
            sys.exit("hf_steps: the stats mode runs as one process")
        if a.batch % world:
            sys.exit(f"hf_steps: --batch {a.batch} does not divide over {world} processes")
        import torch.distributed as dist
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    with open(a.config) as f:
        raw = json.load(f)
    raw.pop("dtype", None)
    config = CONFIG_MAPPING[raw.pop("model_type")](**raw)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=getattr(torch, a.dtype)).to(device)
    model.train()  # no dropout in these families; train mode as a trainer runs it

    ids = torch.randint(config.vocab_size, (a.batch, a.seq), device=device)
    rows = a.batch // world
    ids = ids[rank * rows:(rank + 1) * rows]  # this rank's share of the global batch
    mask = torch.ones_like(ids)

    trainable = []
    optimizer = None
    if a.mode.startswith("lora"):
        import peft
        names = {n for n, _ in model.named_parameters()}
        params = None
        if a.mode == "lora-experts":
            params = sorted({n.rsplit(".", 1)[0].split(".layers.")[1].split(".", 1)[1] + "." + n.rsplit(".", 1)[1]
                             for n in names if ".mlp.experts." in n and n.endswith(("gate_up_proj", "down_proj"))})
            params += sorted({".".join(n.split(".")[-3:]) for n in names if n.endswith((".mlp.gate.weight", ".mlp.router.weight"))})
        # The linear layers by name, as esft's "all-linear" picks them: PEFT's own "all-linear" also adapts the fused
        # experts of transformers 5 (with its own ranks), which is the other mode.
        linear = sorted(n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and not n.endswith("lm_head"))
        lora = peft.LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=linear, target_parameters=params)
        model = peft.get_peft_model(model, lora)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.0, fused=True)
    elif a.mode != "stats":
        for name, param in model.named_parameters():
            train = a.mode == "full" or routed_expert_tensor(name)
            param.requires_grad_(train)
            if not train:
                continue
            trainable.append(param)
            if a.mode == "esft":
                # The same spread of experts as esft-bench-steps: n of E, evenly over the bank.
                experts = param.shape[0]
                n = min(a.esft_experts, experts)
                keep = torch.zeros(experts, dtype=torch.bool, device=device)
                keep[[i * experts // n for i in range(n)]] = True
                shape = (experts,) + (1,) * (param.dim() - 1)
                param.register_hook(lambda g, keep=keep.view(shape): g * keep)
        optimizer = torch.optim.AdamW(trainable, lr=1e-5, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def stats_step():
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask, use_cache=False, output_router_logits=True)

    def train_step():
        model(input_ids=ids, attention_mask=mask, labels=ids, use_cache=False).loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    step = stats_step if a.mode == "stats" else train_step
    times = []
    for r in range(a.repeat + 1):
        start = time.perf_counter()
        step()
        sync()
        if r > 0:  # run 0 warms up
            times.append(time.perf_counter() - start)

    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()
        if rank != 0:
            return 0
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    state_bytes = 0
    if optimizer is not None:
        for state in optimizer.state.values():
            state_bytes += sum(t.numel() * t.element_size() for t in state.values() if torch.is_tensor(t) and t.dim() > 0)
    print(json.dumps({
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "attention": getattr(config, "_attn_implementation", None),
        "experts": getattr(config, "_experts_implementation", None),
        "processes": world,
        "tokens_per_s": a.batch * a.seq / statistics.median(times),  # of the whole group: the global batch
        "peak_mib": peak_mib,
        "trainable": sum(t.numel() for t in trainable),
        "optimizer_bytes": state_bytes,
    }))


if __name__ == "__main__":
    sys.exit(main())
