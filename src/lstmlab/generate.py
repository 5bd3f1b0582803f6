"""``lstmlab generate MODEL --prime TEXT --length N``: sample text from a character-level LM.

The model is one trained by ``lstmlab train`` on ``text-file`` (or ``fortunes``) data: token ids
in, a softmax over the vocabulary at every step out.  The vocabulary comes from ``vocab.json``,
found next to the model, one folder up (a run directory's ``checkpoints/``), or via ``--vocab``.
The LSTM states are carried from one character to the next (the prime is read once), so each new
character costs one step of the network; ``--windowed`` re-reads the last ``seq_len`` characters
for each one instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from .cliutil import refuse, standalone
from .data import Vocab
from .layers import Dense, Dropout, Embedding, RNNLayer
from .model import load_model
from .run import RunDir

__all__ = ["add_parser", "run", "find_vocab", "load_vocab", "sample", "steppable"]


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


def steppable(model) -> bool:
    """Whether ``model`` can run one token at a time with its recurrent states carried over and give
    what a run over the whole history gives: Embedding, Dense, Dropout and forward recurrent layers
    only (a backwards layer, Bidirectional, Attention or Masking needs the whole window)."""
    for layer in model.layers:
        if isinstance(layer, RNNLayer):
            if layer.go_backwards:
                return False
        elif not isinstance(layer, (Embedding, Dense, Dropout)):
            return False
    return True


@contextmanager
def _carried_states(model, carry: bool = True):
    """The recurrent layers stateful (``carry``, from zero states) or not for the block; as they were
    after it (a stateful model's own states are neither used nor lost)."""
    layers = model.recurrent_layers()
    saved = [(layer.stateful, layer._states) for layer in layers]
    try:
        for layer in layers:
            layer.stateful, layer._states = carry, None
        yield
    finally:
        for layer, (flag, states) in zip(layers, saved):
            layer.stateful, layer._states = flag, states


def _last_probs(model, ids: list[int]) -> np.ndarray:
    """The model's next-token probabilities after ``ids`` (float64)."""
    probs = model(torch.tensor([ids], dtype=torch.long))
    if probs.dim() == 3:
        probs = probs[:, -1]
    return probs[0].double().clamp_min(1e-30).numpy()


def _draw(p: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """One token from ``softmax(log p / temperature)``, never ``<pad>`` / ``<unk>``."""
    logp = np.log(p) / temperature
    logp[:2] = -np.inf
    logp -= logp.max()
    q = np.exp(logp)
    return int(rng.choice(len(q), p=q / q.sum()))


def sample(model, vocab, prime: str, length: int, temperature: float = 0.8, seed: int | None = None,
           context: int | None = None, stateful: bool | None = None) -> str:
    """Generate ``length`` characters after ``prime`` (returned without the prime).

    Stateful stepping (the default where :func:`steppable`): the prime is fed once, then one
    character per step, the LSTM states carried from step to step, so each character costs one
    step, not a window's worth; the states run over the whole history. ``stateful=False`` feeds
    the last ``context`` characters (all when None) again for every new one; with ``context=None``
    both give the same text. Each character is drawn from ``softmax(log p / temperature)``;
    ``<pad>`` and ``<unk>`` never are; ``temperature`` -> 0 approaches greedy decoding.
    """
    if temperature <= 0:
        raise GenerateError(f"--temperature: expected a positive number, got {temperature}")
    if stateful and not steppable(model):
        raise GenerateError("stateful generation needs forward recurrent layers with Embedding/Dense/Dropout "
                            "around them; this model has a backwards, bidirectional or attention layer")
    rng = np.random.default_rng(seed)
    ids = list(vocab.encode(prime)) if prime else []
    ids = ids or [vocab.stoi.get("\n", 2)]
    out: list[int] = []
    was = model.training
    model.eval()
    try:
        carry = steppable(model) if stateful is None else stateful
        with torch.no_grad(), _carried_states(model, carry):
            for _ in range(length):
                if carry:  # the prime once, then the last character
                    feed = out[-1:] or ids
                else:
                    feed = (ids + out)[-context:] if context else ids + out
                out.append(_draw(_last_probs(model, feed), temperature, rng))
    finally:
        model.train(was)
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
    p.add_argument("--windowed", action="store_true",
                   help="feed the last seq_len characters (the training window) again for each new one instead "
                        "of carrying the LSTM states (slower; the text then never looks further back)")
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
                      context=info.get("seq_len"), stateful=False if getattr(args, "windowed", False) else None)
    except (ValueError, FileNotFoundError) as exc:
        return refuse("generate", exc, args)
    print(args.prime + text, flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return standalone("generate", add_parser, run, argv)


if __name__ == "__main__":
    sys.exit(main())
