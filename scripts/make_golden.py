#!/usr/bin/env python3
"""Generate golden files from Hugging Face Transformers for ulysses' C++ tests.

What it produces (under tests/data/golden/<model_type>/ for each model_type in
llama, qwen2, qwen3, mistral):
  config.json             HF config as written by model.save_pretrained
  model.safetensors       tiny float32 model with randomized weights
  generation_config.json  (written by save_pretrained; not needed by tests)
  case.json               inputs, labels, loss, per-token losses, first-doc logits
  grads.safetensors       d(mean loss)/d(param) for every parameter, HF names, float32

Tiny model: hidden 32, intermediate 64, 2 layers, 4 heads, 2 kv heads, head_dim 8,
vocab 64, max_position_embeddings 256, rms_norm_eps 1e-6, rope_theta 10000, eager
attention, float32.  Per type:
  llama   : attention_bias=True (q/k/v/o biases), rope_scaling llama3
            (factor 8, low 1, high 4, original_max_position_embeddings 16)
  qwen2   : q/k/v biases (built in), use_sliding_window=False
  qwen3   : q_norm/k_norm (built in), attention_bias=False, tie_word_embeddings=True
  mistral : sliding_window=None
Weights: every parameter re-drawn from a fixed torch seed: matrices N(0, 0.2^2),
RMSNorm weights 1 + 0.1*N(0,1), biases 0.1*N(0,1).

Case: 3 documents of lengths 7, 12, 5 (random ids in [0, 64), fixed seed), each
run through the HF model alone (batch 1, no padding, position_ids 0..len-1).
Labels shift inside each document (label[i] = input[i+1]; last token of each
document = -100) and tokens 0..1 of document 2 (the third one) are also -100.
loss = sum over documents of F.cross_entropy(logits.double(), labels,
ignore_index=-100, reduction='sum'), divided by N = number of valid labels.
That mean loss is backpropagated (model in float32) to give grads.safetensors.
For qwen3 (tied embeddings) the gradient of the shared matrix is stored once,
under model.embed_tokens.weight (it includes the lm_head contribution).

Rerun (CPU is fine; needs torch, transformers, safetensors from PyPI):
    python3 -m pip install torch transformers safetensors
    python3 scripts/make_golden.py            # writes tests/data/golden/
The script reloads every saved model with AutoModelForCausalLM.from_pretrained
and checks it reproduces the loss and gradients.

Versions used for the committed files: see VERSIONS below / case.json
("torch_version", "transformers_version").
"""
import json
import os
import sys

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import save_file, load_file
from transformers import AutoConfig, AutoModelForCausalLM

VERSIONS = "torch 2.15.0+cu132 (run on CPU), transformers 5.24.0, safetensors 0.8.0, Python 3.11.7"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "data", "golden")

DOC_LENS = [7, 12, 5]
MASKED_PROMPT = {2: 2}  # document index -> number of leading tokens masked
VOCAB = 64

COMMON = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=8,
    vocab_size=VOCAB,
    max_position_embeddings=256,
    rms_norm_eps=1e-6,
    rope_theta=10000.0,
    tie_word_embeddings=False,
)

LLAMA3_ROPE = {
    "rope_type": "llama3",
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 16,
}

PER_TYPE = {
    "llama": dict(attention_bias=True, rope_scaling=dict(LLAMA3_ROPE)),
    "qwen2": dict(use_sliding_window=False),
    "qwen3": dict(attention_bias=False, tie_word_embeddings=True),
    "mistral": dict(sliding_window=None),
}

SEEDS = {"llama": 1001, "qwen2": 1002, "qwen3": 1003, "mistral": 1004}


def make_config(model_type):
    kw = dict(COMMON)
    kw.update(PER_TYPE[model_type])
    if int(transformers.__version__.split(".")[0]) >= 5:
        # Transformers 5 folds rope_theta/rope_scaling into rope_parameters
        # (legacy kwargs are still converted, but say it explicitly).
        rope = kw.pop("rope_scaling", None) or {"rope_type": "default"}
        rope = dict(rope, rope_theta=kw.pop("rope_theta"))
        kw["rope_parameters"] = rope
    cfg = AutoConfig.for_model(model_type, **kw)
    cfg._attn_implementation = "eager"
    return cfg


def randomize(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            z = torch.randn(p.shape, generator=g, dtype=torch.float32)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * z)
            elif name.endswith(".bias"):
                p.copy_(0.1 * z)
            else:
                p.copy_(0.2 * z)


def make_inputs():
    g = torch.Generator().manual_seed(20240601)
    docs = [torch.randint(0, VOCAB, (n,), generator=g) for n in DOC_LENS]
    labels = []
    for d, ids in enumerate(docs):
        lab = torch.full_like(ids, -100)
        lab[:-1] = ids[1:]
        lab[: MASKED_PROMPT.get(d, 0)] = -100
        labels.append(lab)
    return docs, labels


def run_case(model, docs, labels):
    """Returns loss (float64 tensor, with graph), token losses, first-doc logits, N."""
    n_valid = int(sum((lab != -100).sum() for lab in labels))
    total = torch.zeros((), dtype=torch.float64)
    token_losses = []
    first_logits = None
    for d, (ids, lab) in enumerate(zip(docs, labels)):
        pos = torch.arange(ids.numel()).unsqueeze(0)
        out = model(input_ids=ids.unsqueeze(0), position_ids=pos, use_cache=False)
        logits = out.logits[0]  # [len, vocab], float32
        assert logits.dtype == torch.float32
        if d == 0:
            first_logits = logits.detach().clone()
        total = total + F.cross_entropy(logits.double(), lab, ignore_index=-100, reduction="sum")
        tl = F.cross_entropy(logits.double(), lab, ignore_index=-100, reduction="none")
        token_losses.append(tl.detach())
    loss = total / n_valid
    return loss, torch.cat(token_losses), first_logits, n_valid


def grads_of(model):
    return {name: p.grad.detach().clone().contiguous() for name, p in model.named_parameters()}


def main():
    torch.use_deterministic_algorithms(True)
    docs, labels = make_inputs()
    input_ids = torch.cat(docs).tolist()
    position_ids = torch.cat([torch.arange(n) for n in DOC_LENS]).tolist()
    shift_labels = torch.cat(labels).tolist()
    cu = [0]
    for n in DOC_LENS:
        cu.append(cu[-1] + n)

    print(f"torch {torch.__version__}, transformers {transformers.__version__}")
    for model_type in ["llama", "qwen2", "qwen3", "mistral"]:
        out_dir = os.path.join(OUT, model_type)
        os.makedirs(out_dir, exist_ok=True)
        torch.manual_seed(SEEDS[model_type])
        cfg = make_config(model_type)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
        model = model.float().eval()
        randomize(model, SEEDS[model_type])
        if model_type == "qwen3":
            assert model.lm_head.weight is model.model.embed_tokens.weight

        loss, token_losses, first_logits, n_valid = run_case(model, docs, labels)
        model.zero_grad()
        loss.backward()
        grads = grads_of(model)

        model.save_pretrained(out_dir, safe_serialization=True)
        save_file(grads, os.path.join(out_dir, "grads.safetensors"))
        case = {
            "transformers_version": transformers.__version__,
            "torch_version": torch.__version__,
            "model_type": model_type,
            "input_ids": input_ids,
            "position_ids": position_ids,
            "shift_labels": shift_labels,
            "cu_seqlens": cu,
            "loss": float(loss.item()),
            "num_valid": n_valid,
            "token_losses": [float(x) for x in token_losses.tolist()],
            "logits_first_doc": [float(x) for x in first_logits.reshape(-1).tolist()],
        }
        with open(os.path.join(out_dir, "case.json"), "w") as f:
            json.dump(case, f, indent=1)
            f.write("\n")

        # ---- verify: reload from disk, recompute loss and grads ----
        m2 = AutoModelForCausalLM.from_pretrained(out_dir, attn_implementation="eager", dtype=torch.float32).eval()
        assert m2.config.model_type == model_type
        loss2, tl2, fl2, n2 = run_case(m2, docs, labels)
        m2.zero_grad()
        loss2.backward()
        g2 = grads_of(m2)
        g_file = load_file(os.path.join(out_dir, "grads.safetensors"))
        assert n2 == n_valid
        assert abs(loss2.item() - case["loss"]) <= 1e-12 * max(1.0, abs(case["loss"])), (loss2.item(), case["loss"])
        assert torch.equal(fl2, first_logits)
        assert set(g2) == set(g_file), (sorted(g2), sorted(g_file))
        max_gdiff = max((g2[k] - g_file[k]).abs().max().item() for k in g2)
        assert max_gdiff == 0.0, max_gdiff
        # token_losses sum / N reproduces the loss
        assert abs(sum(case["token_losses"]) / n_valid - case["loss"]) < 1e-12
        size = sum(os.path.getsize(os.path.join(out_dir, f)) for f in os.listdir(out_dir))
        print(f"{model_type:8s} loss={case['loss']:.15f} N={n_valid} params={len(g2)} "
              f"dir={size} bytes  reload OK")


if __name__ == "__main__":
    sys.exit(main())
