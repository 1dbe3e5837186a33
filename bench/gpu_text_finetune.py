"""GPU check of the text moderation model (run on a lent GPU box, not in CI): MiniLM encoding throughput,
the frozen-encoder head and whole-encoder fine-tuning on the full HateXplain split, side by side.

Needs only torch, transformers and scikit-learn (plus this repo's ``assets/moderation/text.py``). Usage:

    python bench/gpu_text_finetune.py --encoder DIR --data DIR --out results.json

``--encoder`` may hold fp16 weights (to travel light); they are upcast to fp32 before training. Models are
selected on val only; test is reported once per model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def fp32_copy(src: Path, dst: Path) -> Path:
    import torch
    from safetensors.torch import load_file, save_file

    dst.mkdir(parents=True, exist_ok=True)
    for f in src.rglob("*"):
        if f.is_file():
            target = dst / f.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            if f.name == "model.safetensors":
                save_file({k: v.to(torch.float32).contiguous() for k, v in load_file(str(f)).items()}, str(target),
                          metadata={"format": "pt"})
            else:
                shutil.copy2(f, target)
    return dst


def read_split(folder: Path, split: str) -> tuple[list[str], list[str]]:
    rows = [json.loads(line) for line in (folder / f"{split}.jsonl").read_text().splitlines() if line.strip()]
    return [r["text"] for r in rows], [r["label"] for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--encoder", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lrs", default="3e-5,5e-5,8e-5")
    args = ap.parse_args()

    import torch

    os.environ["SOCIALPULSE_TEXT_ENCODER_PATH"] = str(fp32_copy(args.encoder, Path("/tmp/minilm-fp32")))
    from assets.moderation.text import (
        TextEncoder,
        classification_metrics,
        finetune_text_moderator,
        profanity_baseline_proba,  # noqa: F401 - imported to fail early if the module changed
        train_text_moderator,
    )

    train_x, train_y = read_split(args.data, "train")
    val_x, val_y = read_split(args.data, "val")
    test_x, test_y = read_split(args.data, "test")
    out: dict = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
                 "torch": torch.__version__, "n": {"train": len(train_x), "val": len(val_x), "test": len(test_x)}}
    device = "cuda" if torch.cuda.is_available() else "cpu"

    def summary(m):
        return {k: m[k] for k in ("accuracy", "macro_f1", "auroc")}

    # raw encoder throughput (fp32 weights; autocast where the encoder uses it)
    for batch in (256, 1024):
        enc = TextEncoder(device=device, batch_size=batch)
        enc.encode(train_x[:batch])
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        enc.encode(train_x)
        if device == "cuda":
            torch.cuda.synchronize()
        out[f"encode_texts_per_s_batch{batch}"] = round(len(train_x) / (time.perf_counter() - t), 1)
    print(json.dumps(out), flush=True)

    t = time.perf_counter()
    frozen, report = train_text_moderator(train_x, train_y, val_x, val_y, encoder=TextEncoder(device=device, batch_size=1024))
    out["frozen"] = {"seconds": round(time.perf_counter() - t, 1), "chosen": report.get("chosen"),
                     "val": summary(classification_metrics(val_y, frozen.predict_proba(val_x))),
                     "test": summary(classification_metrics(test_y, frozen.predict_proba(test_x)))}
    print(json.dumps(out["frozen"]), flush=True)

    out["finetuned"] = []
    for lr in (float(x) for x in args.lrs.split(",")):
        t = time.perf_counter()
        model, rep = finetune_text_moderator(train_x, train_y, val_x, val_y, epochs=args.epochs, lr=lr, device=device,
                                             progress=lambda m: print(m, flush=True))
        row = {"lr": lr, "seconds": round(time.perf_counter() - t, 1),
               "epochs": [{k: e.get(k) for k in ("epoch", "train_loss", "seconds")} | {"val_macro_f1": e.get("val", {}).get("macro_f1")}
                          for e in rep.get("epochs", [])],
               "best_epoch": rep.get("best_epoch"),
               "val": summary(classification_metrics(val_y, model.predict_proba(val_x))),
               "test": summary(classification_metrics(test_y, model.predict_proba(test_x)))}
        out["finetuned"].append(row)
        print(json.dumps(row), flush=True)
    best = max(out["finetuned"], key=lambda r: r["val"]["macro_f1"])
    out["selected_on_val"] = {"kind": "finetuned" if best["val"]["macro_f1"] > out["frozen"]["val"]["macro_f1"] else "frozen",
                              "lr": best["lr"], "val": best["val"], "test": best["test"]}
    args.out.write_text(json.dumps(out, indent=2))
    print(json.dumps(out["selected_on_val"]), flush=True)


if __name__ == "__main__":
    main()
