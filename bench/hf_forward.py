"""Hugging Face transformers on one configuration that esft-bench-forward measures, for its side-by-side columns.

Builds the family's transformers model from the same config.json keys, with transformers' own random
initialisation, and measures tokens/s of a forward pass (no gradients, no KV cache) and of a full fine-tuning step
(forward + cross-entropy + backward, every parameter trainable), as the median of --repeat runs after one warm-up,
on the same batch, sequence length, dtype, device and thread count. Prints one JSON line.

usage: hf_forward.py --config CONFIG.json --batch B --seq T --repeat R --device cpu|cuda --dtype float32|bfloat16
                     [--threads N]
"""
import argparse
import json
import statistics
import sys
import time

import torch
import transformers
from transformers import AutoModelForCausalLM, CONFIG_MAPPING


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    p.add_argument("--threads", type=int, default=0)
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    dtype = getattr(torch, a.dtype)

    with open(a.config) as f:
        raw = json.load(f)
    raw.pop("dtype", None)
    config = CONFIG_MAPPING[raw.pop("model_type")](**raw)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=dtype).to(device)
    model.train()  # no dropout in these families; train mode as a trainer runs it

    ids = torch.randint(config.vocab_size, (a.batch, a.seq), device=device)
    mask = torch.ones_like(ids)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def forward():
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask, use_cache=False)

    def train_step():
        model.zero_grad(set_to_none=False)
        model(input_ids=ids, attention_mask=mask, labels=ids, use_cache=False).loss.backward()

    def rate(step):
        times = []
        for r in range(a.repeat + 1):
            start = time.perf_counter()
            step()
            sync()
            if r > 0:  # run 0 warms up
                times.append(time.perf_counter() - start)
        return a.batch * a.seq / statistics.median(times)

    result = {
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "attention": getattr(config, "_attn_implementation", None),
        "experts": getattr(config, "_experts_implementation", None),
        "forward_tok_s": rate(forward),
        "full_tok_s": rate(train_step),
    }
    if device.type == "cuda":
        result["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
    print(json.dumps(result))


if __name__ == "__main__":
    sys.exit(main())
