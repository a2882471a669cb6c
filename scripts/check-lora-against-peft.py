#!/usr/bin/env python3
"""Checks an esft LoRA adapter (train --method lora) against PEFT and transformers.

Loads the base model with transformers and the adapter with PEFT, and compares their logits on random token ids
with esft's own (`esft-host forward --adapter`, which folds the pairs into the weights). With --merged, also loads
esft's merge of the adapter with transformers alone and compares. Fails when a difference exceeds --tol, or when
the adapter changes the logits too little for the comparison to mean anything.

Exit status: 0 passed, 1 failed, 77 when torch/transformers/peft are not installed (ctest reads it as skipped).
"""
import argparse
import os
import subprocess
import sys
import tempfile

try:
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file, save_file
    from transformers import AutoModelForCausalLM
except ImportError as e:  # the product never needs Python; this check does
    print(f"skipped: {e}")
    sys.exit(77)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="base model directory")
    ap.add_argument("--adapter", required=True, help="LoRA adapter folder (adapter_config.json)")
    ap.add_argument("--esft", required=True, help="the esft-host binary")
    ap.add_argument("--merged", help="esft-host merge's output for the same adapter")
    ap.add_argument("--tol", type=float, default=1e-4, help="largest allowed max abs logit difference (float32)")
    args = ap.parse_args()

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32).eval()
    ids = torch.randint(0, base.config.vocab_size, (2, 24))
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits
    peft_model = PeftModel.from_pretrained(base, args.adapter).eval()
    with torch.no_grad():
        peft_logits = peft_model(input_ids=ids).logits

    with tempfile.TemporaryDirectory() as tmp:
        inputs, out = os.path.join(tmp, "inputs.safetensors"), os.path.join(tmp, "out.safetensors")
        save_file({"input_ids": ids.contiguous()}, inputs)
        subprocess.run([args.esft, "--device", "cpu", "--dtype", "float32", "forward", "--model", args.model,
                        "--adapter", args.adapter, "--inputs", inputs, "--out", out], check=True)
        esft_logits = load_file(out)["logits"]

    rows = [("PEFT vs base (the adapter's effect)", (peft_logits - base_logits).abs().max().item(), None),
            ("esft vs PEFT", (esft_logits - peft_logits).abs().max().item(), args.tol)]
    if args.merged:
        merged = AutoModelForCausalLM.from_pretrained(args.merged, dtype=torch.float32).eval()
        with torch.no_grad():
            rows.append(("transformers on esft's merge vs PEFT", (merged(input_ids=ids).logits - peft_logits).abs().max().item(), args.tol))
    ok = True
    print(f"{'comparison':40} {'max abs diff':>14} {'limit':>10}")
    for name, diff, tol in rows:
        limit = f"<= {tol:.0e}" if tol is not None else f">= {100 * args.tol:.0e}"
        passed = diff <= tol if tol is not None else diff >= 100 * args.tol
        ok &= passed
        print(f"{name:40} {diff:14.3e} {limit:>10}  {'ok' if passed else 'FAILED'}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
