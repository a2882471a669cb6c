#!/usr/bin/env python3
"""Make (or verify) the Hugging Face reference fixtures of the parity tests.

What: for each model family (qwen3_moe, qwen2_moe, olmoe, glm4_moe, gpt_oss, deepseek_v2) this builds a tiny model
from the configuration table below with seeded random weights, saves it the way transformers saves checkpoints
(per-expert Hub layout), and records what transformers computes with it: logits, hidden states, per-MoE-layer
routing (router logits, top-k experts and the weights applied to their outputs), the load-balancing loss, the
next-token cross-entropy, greedy generation, and d(ce_loss)/d(tensor) for every checkpoint tensor. The layout,
names and tolerances are those of the project's fixtures README (shared/fixtures/README.md): per family folder,
model/ (config and safetensors), reference.safetensors (input_ids, attention_mask, logits, hidden_states.N,
router_logits.L, topk_idx.L, topk_weight.L, aux_loss, ce_loss, generate.prompt, generate.output) and
grads.safetensors (under checkpoint names). An installed esft has this file as share/esft/make-fixtures.py.

Why: the C++ plugins are checked against these files. A new family brings its own reference by adding a row to
FAMILIES, and all references can be rebuilt after a transformers upgrade. The committed fixtures stay the test
inputs; this program is a tool, never run by the tests.

--check DIR recomputes every reference tensor and gradient of the fixtures in DIR from their model/ folder with the
same code that generation uses, compares them with the stored files and prints a table of measured errors; it
exits non-zero on any failure. That is how the reference computation itself is verified.

A family outside this table (a plugin built against the installed SDK, examples/plugin-llama) describes its row in
a JSON file given with --spec: {"name": .., "model_type": .., "config": {..}, "score": "logit", "aux": false,
"weights_dtype": "float32", "max_shard_size": null}; the keys are those of FAMILIES below ("model_type" defaults to
"name"). With --spec, only the families of the spec files are made or checked unless --family says otherwise.

Usage (the project's venv; nothing is downloaded):
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/make-fixtures.py [--family F ...] [--out DIR] [--seed S]
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/make-fixtures.py --check tests/data/hf [--family F ...]
    HF_HUB_OFFLINE=1 .venv/bin/python scripts/make-fixtures.py --spec my_family.json --out DIR
Without --out a new temporary folder (hf-fixtures-*) is made. An existing family folder is only replaced with
--overwrite (so tests/data is never overwritten by accident).
"""

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # models are built from configs: nothing may be downloaded
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

# Shared by every family: hidden 64, vocabulary 384, 4 query heads, top-2 routing.
COMMON = dict(hidden_size=64, vocab_size=384, num_attention_heads=4, num_experts_per_tok=2,
              max_position_embeddings=4096)

# Per family: the config arguments that differ from COMMON and transformers' defaults (they reproduce the committed
# config.json files exactly), how the router ranks experts ("logit": top-k of logits or of their softmax, which
# ranks the same; "sigmoid_bias": top-k of sigmoid(logit) + e_score_correction_bias; "softmax_group": top-k of
# softmax(logit) within the best groups, a group scored by its largest probability), whether the causal-LM class
# has a load-balancing loss, the dtype of the stored weights, and the shard size of save_pretrained.
FAMILIES = {
    "qwen2_moe": dict(
        config=dict(num_hidden_layers=3, num_key_value_heads=2, intermediate_size=96, moe_intermediate_size=32,
                    shared_expert_intermediate_size=48, num_experts=8, mlp_only_layers=[1],
                    rope_parameters={"rope_theta": 1e6, "rope_type": "default"}),
        score="logit", aux=True, weights_dtype="bfloat16", max_shard_size=None),
    "qwen3_moe": dict(
        config=dict(num_hidden_layers=3, num_key_value_heads=2, head_dim=24, intermediate_size=96,
                    moe_intermediate_size=32, num_experts=8, norm_topk_prob=True,
                    rope_parameters={"rope_theta": 1e6, "rope_type": "default"}),
        score="logit", aux=True, weights_dtype="float32", max_shard_size="50KB"),
    "olmoe": dict(
        config=dict(num_hidden_layers=2, num_key_value_heads=4, intermediate_size=32, num_experts=8,
                    eos_token_id=1, pad_token_id=0),
        score="logit", aux=True, weights_dtype="float32", max_shard_size=None),
    "glm4_moe": dict(
        config=dict(num_hidden_layers=3, num_key_value_heads=2, head_dim=16, intermediate_size=96,
                    moe_intermediate_size=32, n_routed_experts=8, n_group=2, topk_group=1,
                    routed_scaling_factor=2.5, attention_bias=True, use_qk_norm=True, first_k_dense_replace=1),
        score="sigmoid_bias", aux=False, weights_dtype="float32", max_shard_size=None),
    "gpt_oss": dict(
        config=dict(num_hidden_layers=2, num_key_value_heads=2, head_dim=16, intermediate_size=32,
                    num_local_experts=8, sliding_window=6, layer_types=["sliding_attention", "full_attention"],
                    max_position_embeddings=131072),
        score="logit", aux=True, weights_dtype="float32", max_shard_size=None),
    "deepseek_v2": dict(
        config=dict(num_hidden_layers=2, num_key_value_heads=4, intermediate_size=96, moe_intermediate_size=32,
                    n_routed_experts=8, n_shared_experts=2, first_k_dense_replace=1, kv_lora_rank=16,
                    q_lora_rank=None, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=16, head_dim=8,
                    n_group=1, topk_group=1),
        score="logit", aux=False, weights_dtype="float32", max_shard_size=None),
    # Variants of a family (model_type names the family): the paths its main fixture leaves out. deepseek_v2 with
    # the q bottleneck (q_lora_rank), attention biases, YaRN with DeepSeek's mscale / mscale_all_dim (unequal, so
    # both the rotary scaling and the softmax scaling matter), and the group-limited router with scaling.
    "deepseek_v2_yarn": dict(
        model_type="deepseek_v2",
        config=dict(num_hidden_layers=3, num_key_value_heads=4, intermediate_size=96, moe_intermediate_size=32,
                    n_routed_experts=8, n_shared_experts=1, first_k_dense_replace=1, kv_lora_rank=16,
                    q_lora_rank=12, qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=16, head_dim=8,
                    attention_bias=True, topk_method="group_limited_greedy", n_group=4, topk_group=2,
                    routed_scaling_factor=2.5, max_position_embeddings=163840,
                    rope_parameters={"rope_type": "yarn", "rope_theta": 10000.0, "factor": 40.0, "mscale": 1.0,
                                     "mscale_all_dim": 0.707, "original_max_position_embeddings": 4096,
                                     "beta_fast": 32, "beta_slow": 1}),
        score="softmax_group", aux=False, weights_dtype="float32", max_shard_size=None),
}

BATCH, SEQ, PADDED = 2, 16, 5  # row 1 has its last PADDED positions padded
PROMPT_LEN, NEW_TOKENS = 6, 10

# Random-weight scales (standard deviations). Linear weights are large enough that every layer changes the output;
# router weights larger still so that routing decisions are clear; norm weights scatter around 1.
STD_LINEAR, STD_ROUTER, STD_NORM, STD_BIAS, STD_SINK = 0.08, 0.5, 0.2, 0.1, 1.0

# Tolerances of the README (float32 on CPU).
TOL_ABS = 1e-4       # logits, hidden states (max abs diff); also router logits and applied top-k weights
TOL_LOSS = 1e-5      # ce_loss, aux_loss (relative)
TOL_GRAD = 1e-4      # ||a-b|| / ||b|| per gradient tensor
DEFAULT_MIN_MARGIN = 1e-3
DEFAULT_TRIES = 20

torch = transformers = None  # imported in main(), after the argument check, so that bad arguments fail fast


class FixtureError(Exception):
    """A problem with one family; reported in one line."""


def fail(message):
    print(f"make-fixtures: error: {message}", file=sys.stderr)
    sys.exit(2)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage first; one line is enough
        fail(message)


def parse_args(argv):
    parser = OneLineParser(
        prog="make-fixtures.py",
        description="Make or verify the transformers reference fixtures (see the docstring of this file).")
    parser.add_argument("--family", nargs="+", action="extend", metavar="F",
                        help=f"families to make or check (default: all); one of {', '.join(FAMILIES)}")
    parser.add_argument("--out", type=Path, help="output folder (default: a new temporary hf-fixtures-* folder)")
    parser.add_argument("--seed", type=int, default=0, help="first seed tried (default 0)")
    parser.add_argument("--tries", type=int, default=DEFAULT_TRIES,
                        help=f"seeds tried per family before giving up (default {DEFAULT_TRIES})")
    parser.add_argument("--min-margin", type=float, default=DEFAULT_MIN_MARGIN,
                        help=f"smallest routing-score gap accepted (default {DEFAULT_MIN_MARGIN})")
    parser.add_argument("--overwrite", action="store_true", help="replace family folders that already exist")
    parser.add_argument("--check", type=Path, metavar="DIR", help="verify the fixtures in DIR instead of making")
    parser.add_argument("--spec", type=Path, nargs="+", action="extend", metavar="FILE",
                        help="JSON files, each one family row outside the built-in table (see the docstring)")
    args = parser.parse_args(argv)
    for path in args.spec or []:
        name = add_spec_family(path)
        if not args.family or name not in args.family:
            args.family = (args.family or []) + [name]
    unknown = [f for f in args.family or [] if f not in FAMILIES]
    if unknown:
        fail(f"unknown family {unknown[0]!r} (known: {', '.join(FAMILIES)})")
    if args.tries < 1:
        fail("--tries must be at least 1")
    if not args.min_margin > 0:
        fail("--min-margin must be positive")
    if args.check is not None:
        if args.out is not None or args.overwrite:
            fail("--check does not write: it takes no --out or --overwrite")
        if not args.check.is_dir():
            fail(f"--check: {args.check} is not a folder")
    return args


SPEC_FAMILIES = set()  # the rows added by --spec
SPEC_KEYS = {"name": str, "model_type": str, "config": dict, "score": str, "aux": bool, "weights_dtype": str,
             "max_shard_size": (str, type(None))}


def add_spec_family(path):
    """Adds the family row of a --spec file to FAMILIES; returns its name."""
    try:
        spec = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        fail(f"--spec {path}: {error}")
    if not isinstance(spec, dict):
        fail(f"--spec {path}: not a JSON object")
    for key, kind in SPEC_KEYS.items():
        if key == "model_type" and key not in spec:
            continue
        if key not in spec:
            fail(f"--spec {path}: no {key!r}")
        if not isinstance(spec[key], kind):
            fail(f"--spec {path}: {key!r} has the wrong type")
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        fail(f"--spec {path}: unknown key {unknown[0]!r} (known: {', '.join(SPEC_KEYS)})")
    if spec["score"] not in ("logit", "sigmoid_bias", "softmax_group"):
        fail(f"--spec {path}: score must be logit, sigmoid_bias or softmax_group")
    name = spec.pop("name")
    if name in FAMILIES:
        fail(f"--spec {path}: {name!r} is a built-in family")
    FAMILIES[name] = spec
    SPEC_FAMILIES.add(name)
    return name


# ----------------------------------------------------------------------------------------------------------------
# Models


def build_config(family):
    model_type = FAMILIES[family].get("model_type", family)
    # A --spec family may be dense: it starts from the shared sizes without the MoE key, and sets that itself.
    common = COMMON if family not in SPEC_FAMILIES else {k: v for k, v in COMMON.items() if k != "num_experts_per_tok"}
    config = transformers.AutoConfig.for_model(model_type, **{**common, **FAMILIES[family]["config"]})
    config.dtype = "float32"
    return config


def new_model(config):
    # Eager attention and the eager (per-expert loop) experts: the plain reference implementations.
    model = transformers.AutoModelForCausalLM.from_config(
        config, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager")
    return model.eval()


def load_model(model_dir):
    """The stored model, computing in float32 (stored bfloat16 weights widen exactly).

    A checkpoint stored in a half dtype is materialised in that dtype and then widened: model.to(bfloat16).float()
    also rounds the floating buffers, the rotary inv_freq among them, and the committed qwen2_moe reference was
    computed that way (with exact float32 inv_freq its logits differ by 4e-4). The C++ RotaryEmbedding rounds
    inv_freq through the checkpoint dtype to match."""
    declared = json.loads((Path(model_dir) / "config.json").read_text())
    declared = declared.get("dtype") or declared.get("torch_dtype") or "float32"
    model = transformers.AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager", experts_implementation="eager")
    if declared != "float32":
        model.to(getattr(torch, declared))
    return model.to(torch.float32).eval()


def moe_layers(model):
    """[(layer index, router module, experts module)] for the decoder layers that route."""
    layers = []
    for index, layer in enumerate(model.model.layers):
        mlp = layer.mlp
        if hasattr(mlp, "experts"):
            router = getattr(mlp, "router", None) or getattr(mlp, "gate")  # gpt_oss names it router
            layers.append((index, router, mlp.experts))
    return layers


def init_weights(model, generator):
    """Seeded random weights in which every term of the forward pass matters."""
    router_weights = {id(router.weight) for _, router, _ in moe_layers(model)}
    state = model.state_dict(keep_vars=True)  # parameters and persistent buffers (e_score_correction_bias)

    def normal(tensor, mean, std):
        values = torch.randn(tensor.shape, generator=generator, dtype=torch.float32) * std + mean
        with torch.no_grad():
            tensor.copy_(values)

    for name in sorted(state):
        tensor = state[name]
        leaf = name.rsplit(".", 1)[-1]
        if name.endswith("norm.weight"):
            normal(tensor, 1.0, STD_NORM)
        elif leaf == "sinks":
            normal(tensor, 0.0, STD_SINK)
        elif leaf.endswith("bias"):  # linear biases, expert biases, e_score_correction_bias
            normal(tensor, 0.0, STD_BIAS)
        elif id(tensor) in router_weights:
            normal(tensor, 0.0, STD_ROUTER)
        elif tensor.is_floating_point():
            normal(tensor, 0.0, STD_LINEAR)


def round_weights(model, dtype):
    """Round the weights to the storage dtype, keeping float32: the references come from the stored values."""
    with torch.no_grad():
        for tensor in model.state_dict(keep_vars=True).values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(dtype).to(torch.float32))


def save_model(model, family, model_dir):
    spec = FAMILIES[family]
    dtype = getattr(torch, spec["weights_dtype"])
    kwargs = {"max_shard_size": spec["max_shard_size"]} if spec["max_shard_size"] else {}
    # save_pretrained reverts transformers' conversion mapping: fused experts are written per expert.
    model.to(dtype).save_pretrained(model_dir, **kwargs)
    model.to(torch.float32)


def checkpoint_names(model_dir):
    from safetensors import safe_open
    names = set()
    for path in sorted(Path(model_dir).glob("*.safetensors")):
        with safe_open(path, "pt") as f:
            names.update(f.keys())
    return names


# ----------------------------------------------------------------------------------------------------------------
# Inputs and reference computation


def make_inputs(generator, vocab_size):
    input_ids = torch.randint(0, vocab_size, (BATCH, SEQ), generator=generator, dtype=torch.int64)
    attention_mask = torch.ones(BATCH, SEQ, dtype=torch.int64)
    attention_mask[1, SEQ - PADDED:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "generate.prompt": input_ids[:1, :PROMPT_LEN].clone()}


@contextlib.contextmanager
def routing_recorder(model):
    """Records, per MoE layer, the router logits and the top-k indices/weights handed to the experts module: the
    weights its forward multiplies the expert outputs by, after every normalisation and scaling of the family."""
    records, handles = {}, []
    for index, router, experts in moe_layers(model):
        def on_router(module, args, output, index=index):
            records.setdefault(index, {})["router_logits"] = output[0].detach().float().reshape(BATCH * SEQ, -1)

        def on_experts(module, args, index=index):
            if len(args) < 3:
                raise FixtureError(f"layer {index}: experts called without positional (index, weights) arguments")
            records.setdefault(index, {})["topk_idx"] = args[1].detach().to(torch.int64).clone()
            records.setdefault(index, {})["topk_weight"] = args[2].detach().float().clone()

        handles.append(router.register_forward_hook(on_router))
        handles.append(experts.register_forward_pre_hook(on_experts))
    try:
        yield records
    finally:
        for handle in handles:
            handle.remove()


def compute(model, family, inputs, stored_names):
    """All reference tensors (reference.safetensors) and gradients under checkpoint names (grads.safetensors) of the
    model of FAMILIES row `family`. `stored_names`: the saved checkpoint's tensors; a tied weight (lm_head.weight
    with tie_word_embeddings) is not one, and its gradient is already its twin's."""
    input_ids, attention_mask = inputs["input_ids"], inputs["attention_mask"]
    extra = {"output_router_logits": True} if FAMILIES[family]["aux"] else {}
    model.zero_grad(set_to_none=True)
    with routing_recorder(model) as records:
        out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True,
                    use_cache=False, **extra)
    # transformers' own causal-LM loss: labels shifted inside, -100 (padding) ignored, mean over the rest.
    labels = input_ids.masked_fill(attention_mask == 0, -100)
    ce_loss = model.loss_function(logits=out.logits, labels=labels, vocab_size=model.config.vocab_size)
    ce_loss.backward()

    ref = {"input_ids": input_ids, "attention_mask": attention_mask, "logits": out.logits.detach()}
    for i, hidden in enumerate(out.hidden_states):  # embeddings, layer outputs, final-norm output
        ref[f"hidden_states.{i}"] = hidden.detach()
    for index in sorted(records):
        for key in ("router_logits", "topk_idx", "topk_weight"):
            ref[f"{key}.{index}"] = records[index][key]
    if FAMILIES[family]["aux"]:
        # The load-balancing loss over all MoE layers with the attention mask, before router_aux_loss_coef.
        ref["aux_loss"] = out.aux_loss.detach().reshape(1).float()
    ref["ce_loss"] = ce_loss.detach().reshape(1)
    ref["generate.prompt"] = inputs["generate.prompt"]
    ref["generate.output"] = greedy(model, inputs["generate.prompt"])
    grads = {name: g for name, g in checkpoint_grads(model).items() if name in stored_names}
    return {k: v.contiguous() for k, v in ref.items()}, grads


def greedy(model, prompt):
    with torch.no_grad():
        return model.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=NEW_TOKENS,
                              do_sample=False, num_beams=1, use_cache=True)


def checkpoint_grads(model):
    """d(ce_loss)/d(tensor) under checkpoint names: the same reverse conversion that save_pretrained applies to the
    weights (it only slices, transposes and renames, so it maps a gradient like its weight). Buffers get zeros."""
    from transformers.core_model_loading import revert_weight_conversion
    grads = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        grad = tensor.grad if isinstance(tensor, torch.nn.Parameter) else None
        grads[name] = grad.detach() if grad is not None else torch.zeros_like(tensor, dtype=torch.float32)
    # Own contiguous storage per tensor: safetensors refuses views that share memory.
    return {name: g.contiguous().clone() for name, g in revert_weight_conversion(model, grads).items()}


def routing_margins(model, family, ref):
    """(margin, group margin). margin: the smallest gap, over all tokens (padded ones included, as the committed
    MANIFEST records it) and MoE layers, between the k-th and (k+1)-th score the router ranks experts by. Group
    margin (group-limited routers only): the same gap between the chosen and the best rejected expert group."""
    margin, group_margin = float("inf"), float("inf")
    if not moe_layers(model):  # a dense model routes nothing
        return margin, group_margin
    k = model.config.num_experts_per_tok
    for index, router, _ in moe_layers(model):
        scores = ref[f"router_logits.{index}"]
        score = FAMILIES[family]["score"]
        if score in ("sigmoid_bias", "softmax_group"):
            if score == "sigmoid_bias":
                scores = scores.sigmoid() + router.e_score_correction_bias.detach().float()
            # softmax_group ranks experts and groups by probability, which ranks them as the logits do: the
            # margins are measured on the logits.
            groups, chosen = router.num_group, router.topk_group
            if chosen < groups:
                grouped = scores.view(scores.shape[0], groups, -1)
                per_group = (grouped.topk(2, dim=-1).values.sum(-1) if score == "sigmoid_bias"
                             else grouped.max(dim=-1).values)
                top = per_group.topk(chosen + 1, dim=-1).values
                group_margin = min(group_margin, (top[:, chosen - 1] - top[:, chosen]).min().item())
                if score == "softmax_group":
                    # Only experts of the kept groups compete. (sigmoid_bias keeps its margin over all experts, as
                    # the committed MANIFEST records it.)
                    keep = torch.zeros_like(per_group).scatter_(1, per_group.topk(chosen, dim=-1).indices, 1)
                    keep = keep.unsqueeze(-1).expand_as(grouped).reshape_as(scores).bool()
                    scores = scores.masked_fill(~keep, float("-inf"))
        top = scores.topk(k + 1, dim=-1).values
        margin = min(margin, (top[:, k - 1] - top[:, k]).min().item())
    return margin, group_margin


# ----------------------------------------------------------------------------------------------------------------
# Making fixtures


def make_family(family, out_dir, seed, tries, min_margin, overwrite):
    final = out_dir / family
    if final.exists() and not overwrite:
        raise FixtureError(f"{final} exists (use --overwrite to replace it)")
    work = out_dir / f".{family}.partial"
    for attempt in range(tries):
        candidate = seed + attempt
        if work.exists():
            shutil.rmtree(work)
        work.mkdir(parents=True)
        generator = torch.Generator().manual_seed(candidate)
        model = new_model(build_config(family))
        init_weights(model, generator)
        round_weights(model, getattr(torch, FAMILIES[family]["weights_dtype"]))
        save_model(model, family, work / "model")
        inputs = make_inputs(generator, model.config.vocab_size)
        # The references come from the saved folder, loaded the way --check loads it.
        model = load_model(work / "model")
        ref, grads = compute(model, family, inputs, checkpoint_names(work / "model"))
        margin, group_margin = routing_margins(model, family, ref)
        generated = ref["generate.output"].shape[1]
        if min(margin, group_margin) < min_margin or generated != PROMPT_LEN + NEW_TOKENS:
            why = (f"stopped after {generated - PROMPT_LEN} tokens" if generated != PROMPT_LEN + NEW_TOKENS
                   else f"margin {min(margin, group_margin):.2e}")
            print(f"  {family}: seed {candidate} rejected ({why})", file=sys.stderr)
            continue
        save_tensors(ref, work / "reference.safetensors")
        save_tensors(grads, work / "grads.safetensors")
        if final.exists():
            shutil.rmtree(final)
        work.rename(final)
        # A dense model has no routing margin: null, not JSON's missing Infinity.
        return {"keys": sorted(ref), "ce_loss": ref["ce_loss"].item(),
                "margin": margin if margin != float("inf") else None, "n_grads": len(grads),
                "seed": candidate}
    shutil.rmtree(work, ignore_errors=True)
    raise FixtureError(f"no seed in {seed}..{seed + tries - 1} gives routing margins >= {min_margin} "
                       f"and {NEW_TOKENS} generated tokens (try another --seed)")


def save_tensors(tensors, path):
    from safetensors.torch import save_file
    save_file(dict(sorted(tensors.items())), str(path))


def write_manifest(out_dir, entries):
    """MANIFEST.json like the committed one; entries of families not made now are kept."""
    path = out_dir / "MANIFEST.json"
    manifest = json.loads(path.read_text()) if path.exists() else {}
    manifest["transformers"] = transformers.__version__
    manifest["torch"] = torch.__version__
    manifest.setdefault("families", {}).update(entries)
    path.write_text(json.dumps(manifest, indent=1) + "\n")


def run_make(args):
    out_dir = args.out or Path(tempfile.mkdtemp(prefix="hf-fixtures-"))
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        fail(f"--out: {error}")
    entries, failures = {}, 0
    for family in args.family or list(FAMILIES):
        started = time.time()
        try:
            entries[family] = make_family(family, out_dir, args.seed, args.tries, args.min_margin, args.overwrite)
        except (FixtureError, OSError) as error:
            print(f"make-fixtures: {family}: {error}", file=sys.stderr)
            failures += 1
            continue
        entry = entries[family]
        print(f"{family:12s} seed {entry['seed']:<4d} margin {entry['margin'] or float('inf'):.4f}  ce_loss {entry['ce_loss']:.6f}"
              f"  {entry['n_grads']} grads  {time.time() - started:.1f}s")
    if entries:
        write_manifest(out_dir, entries)
        print(f"wrote {', '.join(entries)} and MANIFEST.json to {out_dir}")
    return 1 if failures else 0


# ----------------------------------------------------------------------------------------------------------------
# Checking fixtures


def check_family(family_dir, manifest_entry):
    """Recompute one fixture and compare. Returns (columns, list of failures)."""
    from safetensors.torch import load_file
    stored = load_file(str(family_dir / "reference.safetensors"))
    stored_grads = load_file(str(family_dir / "grads.safetensors"))
    model = load_model(family_dir / "model")
    inputs = {k: stored[k] for k in ("input_ids", "attention_mask", "generate.prompt")}
    ref, grads = compute(model, family_dir.name, inputs, checkpoint_names(family_dir / "model"))
    failures, cols = [], {}

    def keyset(name, new, old):
        if set(new) != set(old):
            failures.append(f"{name} keys differ: {sorted(set(new) ^ set(old))}")
        for key in set(new) & set(old):
            if new[key].shape != old[key].shape or new[key].dtype != old[key].dtype:
                failures.append(f"{name} {key}: {list(new[key].shape)} {new[key].dtype} vs "
                                f"{list(old[key].shape)} {old[key].dtype}")

    keyset("reference", ref, stored)
    keyset("grads", grads, stored_grads)
    names = checkpoint_names(family_dir / "model")
    if set(grads) != names:
        failures.append(f"grads do not name the checkpoint tensors: {sorted(set(grads) ^ names)[:4]}")
    if failures:
        return cols, failures

    token_mask = stored["attention_mask"].reshape(-1).bool()  # compare non-padded positions only

    def max_abs(prefix, per_token):
        worst = 0.0
        for key in (k for k in ref if k == prefix or k.startswith(prefix + ".")):
            a, b = ref[key], stored[key]
            if not per_token:
                a, b = a.reshape(BATCH * SEQ, -1), b.reshape(BATCH * SEQ, -1)
            worst = max(worst, (a[token_mask] - b[token_mask]).abs().max().item())
        return worst

    def limit(name, value, tol):
        cols[name] = f"{value:.1e}"
        if not value <= tol:
            failures.append(f"{name} {value:.2e} > {tol:.0e}")

    limit("logits", max_abs("logits", False), TOL_ABS)
    limit("hidden", max_abs("hidden_states", False), TOL_ABS)
    limit("router", max_abs("router_logits", True), TOL_ABS)

    # Top-k: the same expert sets per non-padded token; weights compared expert by expert (glm4 does not sort).
    idx_bad, weight_err = 0, 0.0
    for key in (k for k in ref if k.startswith("topk_idx.")):
        layer = key.split(".")[1]
        a_idx, b_idx = ref[key][token_mask], stored[key][token_mask]
        a_w, b_w = ref[f"topk_weight.{layer}"][token_mask], stored[f"topk_weight.{layer}"][token_mask]
        a_order, b_order = a_idx.argsort(-1), b_idx.argsort(-1)
        a_idx, b_idx = a_idx.gather(1, a_order), b_idx.gather(1, b_order)
        same = (a_idx == b_idx).all(-1)
        idx_bad += int((~same).sum())
        if same.any():
            diff = a_w.gather(1, a_order)[same] - b_w.gather(1, b_order)[same]
            weight_err = max(weight_err, diff.abs().max().item())
    cols["topk_idx"] = f"{idx_bad} bad"
    if idx_bad:
        failures.append(f"{idx_bad} tokens route to other experts")
    limit("topk_w", weight_err, TOL_ABS)

    for key in ("aux_loss", "ce_loss"):
        if key in ref:
            a, b = ref[key].item(), stored[key].item()
            limit(key.split("_")[0], abs(a - b) / abs(b), TOL_LOSS)
        else:
            cols[key.split("_")[0]] = "-"

    worst, worst_name, zeros = 0.0, "", 0
    for name in stored_grads:
        a, b = grads[name], stored_grads[name]
        norm_b = b.norm().item()
        if norm_b == 0.0:  # experts no token chose, buffers: both must be exactly zero
            zeros += 1
            if a.norm().item() != 0.0:
                failures.append(f"grad {name} should be zero")
            continue
        err = (a - b).norm().item() / norm_b
        if err > worst:
            worst, worst_name = err, name
    limit("grads", worst, TOL_GRAD)
    cols["grads"] += f" ({len(stored_grads)}, {zeros} zero)"

    generate_ok = torch.equal(ref["generate.output"], stored["generate.output"])
    cols["generate"] = "same" if generate_ok else "DIFF"
    if not generate_ok:
        failures.append(f"greedy tokens differ: {ref['generate.output'].tolist()}")

    margin, group_margin = routing_margins(model, family_dir.name, ref)
    cols["margin"] = f"{margin:.4f}"
    if manifest_entry is not None:
        # Recomputing the recorded margin checks that this program measures it as the fixtures did.
        recorded = manifest_entry.get("margin")
        if recorded is not None and abs(recorded - margin) > TOL_ABS:
            failures.append(f"margin {margin:.6f} but MANIFEST.json has {recorded:.6f}")
        cols["margin"] += "=M" if recorded is not None and abs(recorded - margin) <= TOL_ABS else ""
        if manifest_entry.get("n_grads") not in (None, len(grads)):
            failures.append(f"{len(grads)} grads but MANIFEST.json says {manifest_entry['n_grads']}")
    if min(margin, group_margin) < TOL_ABS:
        failures.append(f"routing margin {min(margin, group_margin):.2e} is within float error of a tie")
    if worst_name and worst > TOL_GRAD:
        failures.append(f"worst gradient: {worst_name}")
    return cols, failures


COLUMNS = ["logits", "hidden", "router", "topk_idx", "topk_w", "aux", "ce", "grads", "generate", "margin"]


def run_check(args):
    root = args.check
    manifest_path = root / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()).get("families", {}) if manifest_path.exists() else {}
    folders = sorted(p for p in root.iterdir() if (p / "model").is_dir() and (p / "reference.safetensors").exists())
    if args.family:
        missing = [f for f in args.family if not (root / f / "model").is_dir()]
        if missing:
            fail(f"--check: no fixture {missing[0]!r} in {root}")
        folders = [root / f for f in args.family]
    if not folders:
        fail(f"--check: no fixture folders (<family>/model/ and reference.safetensors) in {root}")
    print(f"checking {root} with transformers {transformers.__version__}, torch {torch.__version__}")
    print("tolerances: logits/hidden/router/topk_w max abs 1e-4 at non-padded positions; aux/ce relative 1e-5; "
          "grads ||a-b||/||b|| 1e-4; margin: recomputed (=M: equals MANIFEST.json)")
    widths = {c: max(len(c), 10) for c in COLUMNS}
    widths["grads"] = 23
    print(f"{'family':12s} " + " ".join(f"{c:>{widths[c]}s}" for c in COLUMNS) + "   result   time")
    failed = 0
    for folder in folders:
        started = time.time()
        try:
            cols, failures = check_family(folder, manifest.get(folder.name))
        except Exception as error:  # a broken fixture is one failed row, not the end of the table
            cols, failures = {}, [f"{type(error).__name__}: {error}"]
        failed += bool(failures)
        print(f"{folder.name:12s} " + " ".join(f"{cols.get(c, '?'):>{widths[c]}s}" for c in COLUMNS)
              + f"   {'FAIL' if failures else 'ok':6s} {time.time() - started:5.1f}s")
        for failure in failures:
            print(f"    {folder.name}: {failure}")
    print(f"{len(folders) - failed} of {len(folders)} families pass")
    return 1 if failed else 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    global torch, transformers
    import torch as torch_module
    import transformers as transformers_module
    torch, transformers = torch_module, transformers_module
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)  # tiny models; deterministic and light on a shared machine
    torch.use_deterministic_algorithms(True)
    with torch.device("cpu"):
        return run_check(args) if args.check is not None else run_make(args)


if __name__ == "__main__":
    sys.exit(main())
