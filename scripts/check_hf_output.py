#!/usr/bin/env python3
"""Checks that a folder saved by `ulysses train` from a Hugging Face model directory loads in
Transformers: AutoConfig, AutoTokenizer (ids equal to the input's tokenizer), and, when PyTorch
is installed, AutoModelForCausalLM. Not part of ctest (ctest needs no Python).

    python3 scripts/check_hf_output.py --ulysses build/ulysses
builds a small input model (tests/data/golden/llama weights + the llama3 test tokenizer), trains
one step with ulysses, then loads the result.
"""
import argparse
import json
import os
import shutil
import subprocess
import tempfile

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TEXTS = ["Hello world", "中文 😀 123 <|eot_id|>", "  spaces\n\nand lines"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ulysses", default=os.path.join(ROOT, "build", "ulysses"))
    args = ap.parse_args()
    import transformers
    from transformers import AutoConfig, AutoTokenizer
    work = tempfile.mkdtemp(prefix="ulysses_hf_check_")
    try:
        src = os.path.join(work, "in")
        os.makedirs(src)
        golden = os.path.join(ROOT, "tests", "data", "golden", "llama")
        for f in ["model.safetensors", "generation_config.json"]:
            shutil.copy(os.path.join(golden, f), src)
        with open(os.path.join(golden, "config.json")) as f:
            config = json.load(f)
        config["vocab_size"] = 1024  # room for the test tokenizer's ids; weights re-initialized
        with open(os.path.join(src, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
        os.remove(os.path.join(src, "model.safetensors"))  # shapes changed: random init
        shutil.copy(os.path.join(ROOT, "tests", "data", "tokenizer", "llama3", "tokenizer.json"),
                    src)
        with open(os.path.join(src, "tokenizer_config.json"), "w") as f:
            json.dump({"tokenizer_class": "PreTrainedTokenizerFast",
                       "bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>"}, f)
        with open(os.path.join(work, "text.jsonl"), "w") as f:
            for t in TEXTS * 4:
                f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
        out = os.path.join(work, "out")
        subprocess.run([args.ulysses, "train", "--model", src, "--data",
                        os.path.join(work, "text.jsonl"), "--max-seq-length", "32",
                        "--max-steps", "1", "--per-device-train-batch-size", "2",
                        "--output-dir", out, "--quiet"], check=True)
        print("transformers", transformers.__version__)
        cfg = AutoConfig.from_pretrained(out)
        print("AutoConfig:", type(cfg).__name__, "dtype", getattr(cfg, "dtype", None))
        print("saved files:", sorted(os.listdir(out)))
        tin = AutoTokenizer.from_pretrained(src)
        tout = AutoTokenizer.from_pretrained(out)
        for t in TEXTS:
            a, b = tin(t)["input_ids"], tout(t)["input_ids"]
            assert a == b and len(b) > 1, (t, a, b)
        print("AutoTokenizer:", type(tout).__name__, "ids equal on", len(TEXTS), "texts")
        try:
            import torch  # noqa: F401
        except ImportError:
            print("AutoModelForCausalLM: skipped (PyTorch is not installed)")
            return
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(out)
        ids = torch.tensor([tout(TEXTS[0])["input_ids"]])
        print("AutoModelForCausalLM:", type(model).__name__, "logits",
              tuple(model(ids).logits.shape))
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
