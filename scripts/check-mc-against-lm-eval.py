#!/usr/bin/env python3
"""Checks `esft-host eval --metric mc` against lm-evaluation-harness on the same model and items.

Runs lm-eval (the .venv's, HF backend, float32 on the CPU) on a local multiple-choice JSON-lines file through a task
defined like ours (context, choices, answer; target delimiter " ", few-shot examples from the first N records of a
dev file), and esft-host on the same files; prints acc and acc_norm of both, how many predictions agree, and the
largest difference of a choice's log-likelihood. Exits 1 when the predictions or the accuracies differ.

  .venv/bin/python scripts/check-mc-against-lm-eval.py --model DIR --data FILE.jsonl [--fewshot N --fewshot-data DEV]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="a model directory transformers loads (config, weights, tokenizer)")
    ap.add_argument("--data", required=True, help='JSON lines {"context", "choices", "answer"} (not gzipped)')
    ap.add_argument("--fewshot", type=int, default=0)
    ap.add_argument("--fewshot-data", help="dev file of the few-shot examples (its first N records)")
    ap.add_argument("--host", default="build/bin/esft-host")
    args = ap.parse_args()

    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lm_eval
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory() as tmp:
        files = {"test": os.path.abspath(args.data)}
        if args.fewshot:
            files["dev"] = os.path.abspath(args.fewshot_data)
        task = {
            "task": "esft_mc_check",
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": files},
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_text": "{{context}}",
            "doc_to_choice": "{{choices}}",
            "doc_to_target": "{{answer}}",
            "target_delimiter": " ",
            "fewshot_delimiter": "\n\n",
            "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
        }
        if args.fewshot:
            task["fewshot_split"] = "dev"
            task["fewshot_config"] = {"sampler": "first_n"}
        with open(os.path.join(tmp, "esft_mc_check.yaml"), "w") as f:
            json.dump(task, f)  # JSON is YAML
        results = lm_eval.simple_evaluate(
            model="hf",
            model_args=f"pretrained={os.path.abspath(args.model)},dtype=float32",
            tasks=["esft_mc_check"],
            num_fewshot=args.fewshot,
            device="cpu",
            batch_size=1,
            log_samples=True,
            task_manager=TaskManager(include_path=tmp),
        )
        theirs = results["results"]["esft_mc_check"]
        samples = sorted(results["samples"]["esft_mc_check"], key=lambda s: s["doc_id"])

        out = os.path.join(tmp, "ours.jsonl")
        cmd = [args.host, "--device", "cpu", "--dtype", "float32", "eval", "--model", args.model, "--data", args.data,
               "--metric", "mc", "--out", out]
        if args.fewshot:
            cmd += ["--fewshot", str(args.fewshot), "--fewshot-data", args.fewshot_data]
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL)
        ours = read_jsonl(out)

    assert len(ours) == len(samples), (len(ours), len(samples))
    agree = agree_norm = 0
    worst = 0.0
    for o, s in zip(ours, samples):
        lls = [r[0] for r in s["filtered_resps"]]
        worst = max(worst, max(abs(a - b) for a, b in zip(o["loglik"], lls)))
        agree += o["pred"] == max(range(len(lls)), key=lambda i: (lls[i], -i))
        agree_norm += s["acc_norm"] == (o["pred_norm"] == o["answer"])
    n = len(ours)
    acc = sum(o["pred"] == o["answer"] for o in ours) / n
    acc_norm = sum(o["pred_norm"] == o["answer"] for o in ours) / n
    print(f"records {n}, {args.fewshot}-shot")
    print(f"lm-eval    acc {theirs['acc,none']:.4f}  acc_norm {theirs['acc_norm,none']:.4f}")
    print(f"esft-host  acc {acc:.4f}  acc_norm {acc_norm:.4f}")
    print(f"same prediction (acc) on {agree}/{n} records, same acc_norm outcome on {agree_norm}/{n}")
    print(f"largest log-likelihood difference {worst:.2e} nats")
    same = agree == n and agree_norm == n and abs(acc - theirs["acc,none"]) < 1e-9 and abs(acc_norm - theirs["acc_norm,none"]) < 1e-9
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
