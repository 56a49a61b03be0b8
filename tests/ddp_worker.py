"""The run tests/test_ddp.py starts under torchrun (2 gloo processes), and the pieces its reference shares.

    python -m torch.distributed.run --nproc-per-node=2 tests/ddp_worker.py OUT_DIR

Each rank trains the same tiny model on the toy data with ``train_distributed`` and saves what
the test compares with one process: the gathered passages of step 1, the logged losses, the last
gradients and the final weights. The model has no dropout (ranks and the single process would
draw different masks) and runs in float64, so that the comparison can be tight.
"""
from __future__ import annotations

import random
import sys
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertConfig, BertModel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.helpers import make_toy_data  # noqa: E402

from retrlab.encoders import BiEncoder, minilm_path  # noqa: E402
from retrlab.train import TrainConfig  # noqa: E402

CONFIG = TrainConfig(steps=2, batch_size=4, lr=1e-3, warmup_ratio=0.0, tau=0.5, seed=0)  # 2 ranks × 2 queries


def build_model() -> BiEncoder:
    """A 1-layer BERT without dropout, in float64, the same weights on every call."""
    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = BiEncoder(BertModel(config, add_pooling_layer=False), tokenizer, passage_max_length=32)
    return model.double()


def hard_negative(data):
    """One train passage outside the query's section, drawn with the batch's generator."""
    def strategy(qid: str, rng: random.Random) -> list[str]:
        return [rng.choice([p for p in data.search_pids("train") if p not in data.qrels[qid]])]

    return strategy


def main(out: Path) -> None:
    from retrlab.ddp import DistributedContrastiveStep, cleanup, rank, setup, train_distributed
    from retrlab.train import Hook

    setup()
    data, model = make_toy_data(), build_model()
    step = DistributedContrastiveStep(model)
    seen = []
    record = Hook(1, lambda s, m: seen.append((list(step.gathered_pids), step.gathered.clone())) and None)
    history = train_distributed(model, data, CONFIG, hard_negative(data), [record], progress=False, step_fn=step)
    torch.save({"gathered": seen, "losses": history.series("loss")[1],
                "grads": {n: p.grad for n, p in model.named_parameters()},
                "params": {n: p.detach() for n, p in model.named_parameters()}}, out / f"rank{rank()}.pt")
    cleanup()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
