"""The one training loop behind `cahp-edge finetune` and `cahp-edge recover`.

Built on HF Accelerate, so the same code runs on CPU, one GPU, or many processes (each process gets
a shard of every epoch's batches; gradients are averaged)::

    accelerate launch --multi_gpu --num_processes 4 -m cahp_edge recover ...        # GPUs
    torchrun --standalone --nproc_per_node 2 -m cahp_edge recover ... --cpu         # CPU processes (gloo)

(``accelerate launch --cpu --num_processes N`` starts CPU processes only through mpirun and a hostfile;
torchrun needs neither, and Accelerate picks up its environment.)
Deterministic for a given seed and process count: the seed fixes the classifier init, dropout and
the batch order.

Batches are length-bucketed: rows are shuffled, cut into pools of 50 batches, each pool sorted by
length and split into batches, then the batch order is shuffled. Padding per batch then costs little,
which matters on CPU where padded tokens are most of the work for short sentences.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from cahp_edge.data import TextDataset
from cahp_edge.errors import DataError, UsageError

ProgressFn = Callable[[int, int, float], None]  # (step, total_steps, running loss), main process only


@dataclass
class TrainConfig:
    epochs: float = 1.0  # fractional epochs stop early (e.g. 0.5 = half of the first epoch's batches)
    lr: float = 5e-5
    batch_size: int = 32
    max_length: int = 128
    seed: int = 0
    weight_decay: float = 0.01
    warmup_ratio: float = 0.06
    alpha: float = 0.5  # weight of the distillation term when a teacher is given
    temperature: float = 2.0
    cpu: bool = False  # force CPU even when a GPU is present

    @classmethod
    def from_options(cls, data, loop, epochs: float, recovering: bool, cpu: bool = False) -> TrainConfig:
        """The loop's settings from the stage options models (``DataOptions``, ``LoopOptions``)."""
        return cls(epochs=epochs, lr=loop.lr(recovering), batch_size=data.batch_size,
                   max_length=data.max_length, seed=data.seed, alpha=loop.alpha,
                   temperature=loop.temperature, cpu=cpu)

    def check(self) -> None:
        """The same ranges as the options models (stated there once), for callers that build this directly."""
        from cahp_edge.data.options import DataOptions
        from cahp_edge.train.options import LoopOptions

        if not self.epochs > 0:
            raise UsageError(f"--epochs must be > 0, got {self.epochs}", "", "pass e.g. --epochs 1")
        LoopOptions(learning_rate=self.lr, alpha=self.alpha, temperature=self.temperature)
        DataOptions(batch_size=self.batch_size, max_length=self.max_length, seed=self.seed)


@dataclass
class TrainResult:
    steps: int
    epochs: float
    examples: int  # rows seen by this process
    loss: float  # mean training loss over the last 50 steps (this process)
    seconds: float
    num_processes: int
    device: str
    is_main_process: bool

    def to_dict(self) -> dict:
        return asdict(self)


def _bucketed_batches(
    lengths: list[int], batch_size: int, rng: random.Random, pool: int = 50
) -> list[list[int]]:
    order = list(range(len(lengths)))
    rng.shuffle(order)
    batches: list[list[int]] = []
    step = batch_size * pool
    for s in range(0, len(order), step):
        chunk = sorted(order[s : s + step], key=lambda i: lengths[i])
        batches += [chunk[j : j + batch_size] for j in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def make_accelerator(cpu: bool = False):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    # zero-head layers of a pruned model or a frozen pooler can leave parameters without gradients
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(cpu=cpu, kwargs_handlers=[ddp])


def train_classifier(
    model,
    tokenizer,
    ds: TextDataset,
    cfg: TrainConfig,
    teacher=None,
    progress: ProgressFn | None = None,
    accelerator=None,
) -> tuple[object, TrainResult]:
    """Fine-tune ``model`` (labels of ``ds`` must be its ids) in place; return (unwrapped model, result).

    With ``teacher`` the loss is ``(1 - alpha) * CE + alpha * T^2 * KL(teacher_T || student_T)``.
    """
    import torch
    import torch.nn.functional as F
    from accelerate.utils import set_seed
    from torch.utils.data import DataLoader

    cfg.check()
    if len(ds) == 0:
        raise DataError(f"training data {ds.source} has no rows", "", "pass a file with labelled rows")
    if max(ds.labels) >= model.config.num_labels:
        raise DataError(
            f"{ds.source} has labels beyond the model's {model.config.num_labels}",
            "",
            "align the data with the model's labels first",
        )
    acc = accelerator or make_accelerator(cfg.cpu)
    set_seed(cfg.seed)
    from cahp_edge.data.encode import cap_chars

    pairs = None if ds.pairs is None else cap_chars(ds.pairs, cfg.max_length)
    enc = tokenizer(cap_chars(ds.texts, cfg.max_length), pairs, truncation=True, max_length=cfg.max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    rows = [{**{k: enc[k][i] for k in keys}, "labels": ds.labels[i]} for i in range(len(ds))]
    lengths = [len(r["input_ids"]) for r in rows]

    def collate(items):
        b = dict(tokenizer.pad([{k: r[k] for k in keys} for r in items], return_tensors="pt"))
        b["labels"] = torch.tensor([r["labels"] for r in items])
        return b

    def loader(epoch: int):
        rng = random.Random(cfg.seed * 1000 + epoch)  # same order on every process; accelerate shards it
        dl = DataLoader(
            rows, batch_sampler=_bucketed_batches(lengths, cfg.batch_size, rng), collate_fn=collate
        )
        return acc.prepare_data_loader(dl)

    def loss_of(batch, out):
        if teacher is None or cfg.alpha <= 0:
            return out.loss
        with torch.no_grad():
            t_logits = teacher(**{k: v for k, v in batch.items() if k != "labels"}).logits
        T = cfg.temperature
        kd = F.kl_div(F.log_softmax(out.logits / T, -1), F.log_softmax(t_logits / T, -1),
                      reduction="batchmean", log_target=True) * T * T
        return (1 - cfg.alpha) * out.loss + cfg.alpha * kd

    if teacher is not None:
        teacher = teacher.to(acc.device).eval()
    return run_steps(model, loader, cfg, acc, progress, loss_of)


NO_DECAY = ("bias", "LayerNorm.weight", "layer_norm.weight", "norm.weight")


def run_steps(model, loader, cfg: TrainConfig, acc, progress: ProgressFn | None = None,
              loss_of=None) -> tuple[object, TrainResult]:
    """AdamW (no decay on biases and norms) with linear warmup/decay over ``cfg.epochs`` of ``loader(epoch)``
    batches; ``loss_of(batch, out)`` (default: the model's own loss). Returns (unwrapped model, result)."""
    import torch
    from transformers import get_linear_schedule_with_warmup

    per_epoch = len(loader(0))
    total = max(1, math.ceil(per_epoch * cfg.epochs))
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [
        {"params": [p for n, p in named if not n.endswith(NO_DECAY)], "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in named if n.endswith(NO_DECAY)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(params, lr=cfg.lr)
    sched = get_linear_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    model, opt, sched = acc.prepare(model, opt, sched)
    model.train()
    t0, step, seen, recent = time.perf_counter(), 0, 0, []
    epoch = 0
    while step < total:
        for batch in loader(epoch):
            if step >= total:
                break
            out = model(**batch)
            loss = out.loss if loss_of is None else loss_of(batch, out)
            acc.backward(loss)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            seen += len(batch["labels"])
            recent = ([*recent, float(loss.detach())])[-50:]
            if progress is not None and acc.is_main_process:
                progress(step, total, sum(recent) / len(recent))
        epoch += 1
    acc.wait_for_everyone()
    model = acc.unwrap_model(model)
    model.eval()
    mean = sum(recent) / len(recent) if recent else float("nan")
    if not math.isfinite(mean):
        raise DataError("training diverged (loss is not finite)", f"last loss {mean}", "lower --lr")
    res = TrainResult(step, cfg.epochs, seen, mean, time.perf_counter() - t0, acc.num_processes,
                      str(acc.device), acc.is_main_process)
    return model, res
