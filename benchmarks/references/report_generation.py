"""Reference pipeline for report generation: a small CNN image encoder and a GRU decoder trained with
teacher forcing, greedy decoding; metric: corpus BLEU-4 of the generated reports on the test split.

    python benchmarks/references/report_generation.py --config RUN/rounds/0/config.json --index-dir RUN/workspace/index
"""

from __future__ import annotations

import math
import re
from collections import Counter

import torch
from monai.transforms import EnsureChannelFirst, LoadImage, Resize, ScaleIntensity
from torch import nn

from _shared import (Clock, emit, first_n, load_images, optimise, optimizer_and_schedule, parse, random_affine,
                     read_split, shuffled_batches, train_epochs)

PAD, BOS, EOS, UNK = 0, 1, 2, 3
REPORT_ZOOM = 0.05  # the report template's fixed zoom (its augmentation reads only rotate_degrees from the config)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+(?:[.\-][a-z0-9]+)*|[^\sa-z0-9]", text.lower())


def corpus_bleu4(hyps: list[list[str]], refs: list[list[str]]) -> float:
    """Papineni et al.: clipped n-gram precisions 1..4 over the corpus, geometric mean, brevity penalty."""
    match, total = [0] * 4, [0] * 4
    hyp_len = ref_len = 0
    for h, r in zip(hyps, refs):
        hyp_len, ref_len = hyp_len + len(h), ref_len + len(r)
        for n in range(1, 5):
            hc = Counter(tuple(h[i:i + n]) for i in range(len(h) - n + 1))
            rc = Counter(tuple(r[i:i + n]) for i in range(len(r) - n + 1))
            match[n - 1] += sum(min(c, rc[g]) for g, c in hc.items())
            total[n - 1] += max(0, len(h) - n + 1)
    if min(match) == 0:
        return 0.0
    log_p = sum(math.log(m / t) for m, t in zip(match, total)) / 4
    bp = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / max(hyp_len, 1))
    return bp * math.exp(log_p)


class Captioner(nn.Module):
    def __init__(self, vocab: int, cin: int, channels, embed: int, hidden: int, layers: int, dropout: float):
        super().__init__()
        enc, prev = [], cin
        for ch in channels:
            enc += [nn.Conv2d(prev, ch, 3, 2, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU(),
                    nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch), nn.ReLU()]
            prev = ch
        self.encoder = nn.Sequential(*enc, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(prev, hidden), nn.Tanh())
        self.embed = nn.Embedding(vocab, embed, padding_idx=PAD)
        self.gru = nn.GRU(embed + hidden, hidden, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.drop, self.out, self.layers = nn.Dropout(dropout), nn.Linear(hidden, vocab), layers

    def forward(self, images, tokens):
        code = self.encoder(images)
        h0 = code.unsqueeze(0).repeat(self.layers, 1, 1).contiguous()
        inp = torch.cat([self.embed(tokens), code.unsqueeze(1).expand(-1, tokens.shape[1], -1)], 2)
        out, _ = self.gru(inp, h0)
        return self.out(self.drop(out))

    @torch.no_grad()
    def greedy(self, images, max_len: int):
        code = self.encoder(images)
        h = code.unsqueeze(0).repeat(self.layers, 1, 1).contiguous()
        tok = torch.full((len(images), 1), BOS, dtype=torch.long)
        result = []
        for _ in range(max_len):
            out, h = self.gru(torch.cat([self.embed(tok), code.unsqueeze(1)], 2), h)
            tok = self.out(out).argmax(-1)
            result.append(tok)
        return torch.cat(result, 1)


def main() -> None:
    cfg, args = parse("Reference report-generation pipeline (plain PyTorch CNN + GRU).")
    clock = Clock()
    train, test, _ = read_split(args.index_dir)
    seed = int(cfg.get("seed", 0))
    train, test = first_n(train, cfg.get("max_train_items"), seed, None), first_n(test, cfg.get("max_test_items"), seed, None)
    max_len = int(cfg.get("max_report_tokens", 60))
    counts = Counter(w for r in train for w in words(r["report"]))
    vocab = ["<pad>", "<bos>", "<eos>", "<unk>"] + sorted(w for w, c in counts.items() if c >= int(cfg.get("vocab_min_freq", 1)))
    ids = {w: i for i, w in enumerate(vocab)}

    def encode(text: str) -> list[int]:
        return [BOS] + [ids.get(w, UNK) for w in words(text)][:max_len] + [EOS]

    seqs = [encode(r["report"]) for r in train]
    width = max(map(len, seqs))
    tokens = torch.tensor([s + [PAD] * (width - len(s)) for s in seqs])
    steps = [LoadImage(image_only=True), EnsureChannelFirst(), Resize(list(cfg["image_size"]), mode="area"), ScaleIntensity()]
    xtr, xte = load_images(train, cfg, steps), load_images(test, cfg, steps)

    model = Captioner(len(vocab), int(cfg.get("in_channels", 1)), list(cfg.get("encoder_channels") or [16, 32, 64, 128]),
                      int(cfg.get("embed_dim", 128)), int(cfg.get("hidden_dim", 256)), int(cfg.get("num_layers", 1)),
                      float(cfg.get("dropout", 0.1)))
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD)
    bs = int(cfg["batch_size"])
    opt, sched = optimizer_and_schedule(model, cfg, -(-len(xtr) // bs))

    def step(x, tok):
        opt.zero_grad()
        logits = model(x, tok[:, :-1])
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), tok[:, 1:].reshape(-1))
        return optimise(opt, sched, loss, model, clip=5.0)

    def batches():
        for idx in shuffled_batches(len(xtr), bs):
            x = xtr[idx]
            if cfg.get("augment", True):  # rotation (the configuration's degrees) and a 5% zoom, no flips
                x = random_affine(x, float(cfg.get("rotate_degrees") or 0), REPORT_ZOOM)
            yield x, tokens[idx]

    train_epochs(cfg, clock, model, batches, step)
    model.eval()
    hyps = []
    for i in range(0, len(xte), 64):
        for row in model.greedy(xte[i:i + 64], max_len + 1).tolist():
            row = row[:row.index(EOS)] if EOS in row else row
            hyps.append([vocab[t] for t in row if t > UNK or t == UNK])
    refs = [words(r["report"])[:max_len] for r in test]
    emit("bleu4", corpus_bleu4(hyps, refs), clock, n_train=len(train), n_test=len(test), epochs=cfg["stop_after"],
         schedule_epochs=int(cfg["epochs"]), vocab_size=len(vocab))


if __name__ == "__main__":
    main()
