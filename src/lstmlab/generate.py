"""``lstmlab generate MODEL --prime TEXT --length N``: sample text from a character-level LM.

The model is one trained by ``lstmlab train`` on ``text-file`` (or ``fortunes``) data: token ids
in, a softmax over the vocabulary at every step out.  The vocabulary comes from ``vocab.json``,
found next to the model, one folder up (a run directory's ``checkpoints/``), or via ``--vocab``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from .data import Vocab
from .model import load_model
from .run import RunDir

__all__ = ["add_parser", "run", "find_vocab", "load_vocab", "sample"]


class GenerateError(ValueError):
    """Bad input to ``lstmlab generate`` (missing vocabulary, wrong kind of model, ...)."""


def find_vocab(model_path: str | Path, vocab: str | Path | None = None) -> Path:
    """``vocab`` if given, else ``vocab.json`` beside the model or in its parent folder."""
    if vocab is not None:
        p = Path(vocab)
        if not p.is_file():
            raise GenerateError(f"{p}: no such vocabulary file (--vocab)")
        return p
    here = Path(model_path).resolve().parent
    for folder in (here, here.parent):
        if RunDir(folder).vocab.is_file():
            return RunDir(folder).vocab
    raise GenerateError(f"{model_path}: no {RunDir.VOCAB} next to the model or in {here.parent}; "
                        f"pass --vocab RUN_DIR/{RunDir.VOCAB}")


def load_vocab(path: Path):
    """The :class:`~lstmlab.data.Vocab` stored by ``lstmlab train`` (plus its extra info)."""
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise GenerateError(f"{path}: not a readable {RunDir.VOCAB} ({exc})") from None
    tokens = info.get("tokens") if isinstance(info, dict) else info
    if not isinstance(tokens, list) or len(tokens) < 3:
        raise GenerateError(f"{path}: expected a 'tokens' list with at least one real token")
    char_level = bool(info.get("char_level", True)) if isinstance(info, dict) else True
    return Vocab(tokens, char_level=char_level), (info if isinstance(info, dict) else {})


def sample(model, vocab, prime: str, length: int, temperature: float = 0.8, seed: int | None = None,
           context: int | None = None) -> str:
    """Generate ``length`` characters after ``prime`` (returned without the prime).

    Each step feeds the last ``context`` characters (the training ``seq_len``; all when None) and
    samples the next one from ``softmax(logits / temperature)``; ``<pad>`` and ``<unk>`` are never
    drawn.  ``temperature`` -> 0 approaches greedy decoding.
    """
    if temperature <= 0:
        raise GenerateError(f"--temperature: expected a positive number, got {temperature}")
    rng = np.random.default_rng(seed)
    ids = list(vocab.encode(prime)) if prime else []
    if not ids:
        start = vocab.stoi.get("\n", 2)
        ids = [start]
    out: list[int] = []
    model.eval()
    with torch.no_grad():
        for _ in range(length):
            window = ids[-context:] if context else ids
            x = torch.tensor([window], dtype=torch.long)
            probs = model(x)
            if probs.dim() == 3:
                probs = probs[:, -1]
            p = probs[0].double().clamp_min(1e-30).numpy()
            logp = np.log(p) / temperature
            logp[:2] = -np.inf  # never <pad> / <unk>
            logp -= logp.max()
            q = np.exp(logp)
            q /= q.sum()
            nxt = int(rng.choice(len(q), p=q))
            ids.append(nxt)
            out.append(nxt)
    return vocab.decode(out)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``lstmlab generate``."""
    p = subparsers.add_parser("generate", help="sample text from a character-level language model",
                              description=__doc__.splitlines()[0])
    p.add_argument("model", help="a .lstmlab model (e.g. RUN_DIR/model.lstmlab)")
    p.add_argument("--prime", default="", help="text to start from")
    p.add_argument("--length", type=int, default=200, help="characters to generate (default 200)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default 0.8)")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    p.add_argument("--vocab", default=None, help=f"{RunDir.VOCAB} (default: next to the model / its run dir)")
    p.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Entry point for ``lstmlab generate``: prints the prime followed by the sampled text."""
    try:
        if args.length < 0:
            raise GenerateError(f"--length: expected an integer >= 0, got {args.length}")
        vpath = find_vocab(args.model, args.vocab)
        vocab, info = load_vocab(vpath)
        if not vocab.char_level:
            raise GenerateError(f"{vpath}: a word-level vocabulary (text classification); generate needs a "
                                "character language model trained on text-file data")
        model = load_model(args.model, compile=False)
        first = model.layers[0] if len(model.layers) else None
        if type(first).__name__ != "Embedding":
            raise GenerateError(f"{args.model}: expected a model starting with an Embedding (token ids in), "
                                f"got {type(first).__name__}")
        if first.input_dim != len(vocab):
            raise GenerateError(f"{args.model}: the model's Embedding has {first.input_dim} tokens but "
                                f"{vpath} has {len(vocab)}; use the {RunDir.VOCAB} of the same run")
        text = sample(model, vocab, args.prime, args.length, args.temperature, args.seed,
                      context=info.get("seq_len"))
    except (ValueError, FileNotFoundError) as exc:
        if getattr(args, "debug", False):
            raise
        print(f"lstmlab generate: error: {str(exc).strip().splitlines()[0]}", file=sys.stderr)
        return 2
    print(args.prime + text, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lstmlab")
    add_parser(parser.add_subparsers(dest="command"))
    return run(parser.parse_args(["generate"] + list(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    sys.exit(main())
