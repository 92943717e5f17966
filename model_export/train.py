"""The training loop: one network per recipe member with early stopping on the mean dev score,
then calibration; several members are served as the mean of their outputs.

``tweetwatch train`` (model_export.cli) runs it with the recipe file and writes the artifact.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from model_export.batches import epoch_batches, tensors
from model_export.calibrate import calibrate_heads, tweet_prior_correction
from model_export.corpus import training_texts, unlabeled_token_lists
from model_export.embeddings import (
    build_vocab,
    embedding_matrix,
    normalised_corpus,
    train_vectors,
)
from model_export.evaluate import dev_objective, evaluate
from model_export.heads import HEAD_BY_NAME, INPUT_NAMES, labels_document
from model_export.loss import MultiTaskLoss
from model_export.model import ModelConfig, TweetEnsemble, TweetTagger
from model_export.predictor import torch_predictor
from model_export.recipe import TrainConfig, member_spec
from model_export.training_sets import load_training_sets
from stream.inference import LabelSpace
from stream.textproc import Vocab

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """The trained network, its vocabulary and what happened while training."""

    model: TweetTagger
    vocab: Vocab
    history: list[dict]
    best_dev: dict
    embedding_coverage: float
    wall_s: float
    losses: list[float]
    calibration: dict = field(default_factory=dict)
    encoder: str = "idcnn"
    seed: int = 13


@dataclass
class EnsembleResult:
    """What the artifact serves: one trained network, or the mean of several."""

    model: TweetTagger | TweetEnsemble
    vocab: Vocab
    members: list[TrainResult]
    # Dev scores of the served model after calibration (empty when dev is not evaluated).
    dev: dict
    dev_objective: float | None
    embedding_coverage: float
    wall_s: float


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_vocab(config: TrainConfig) -> tuple[Vocab, np.ndarray, float]:
    """Vocabulary and initial word embeddings from unlabeled tweets plus training texts."""
    texts = training_texts(config.data_dir, config.mitchell_folds)
    corpus = texts + unlabeled_token_lists(config.data_dir, config.unlabeled_files)
    vocab = build_vocab(corpus, config.max_words)
    vectors = train_vectors(normalised_corpus(corpus), config.work_dir / "embeddings",
                            config.word_dim, config.embedding_epochs, config.embedding_seed)
    matrix, coverage = embedding_matrix(vocab, vectors, config.word_dim, config.embedding_seed)
    return vocab, matrix, coverage


def train(config: TrainConfig, vocab_and_vectors=None, member: str | None = None) -> TrainResult:
    """Train one network (``member``, an entry of ``config.encoders``, default the first) with
    early stopping on the mean dev score; returns the best epoch's model, calibrated."""
    started = time.monotonic()
    member = member or config.encoders[0]
    encoder, member_seed = member_spec(member)
    seed = config.seed if member_seed is None else member_seed
    seed_everything(seed)
    rng = random.Random(seed)
    vocab, matrix, coverage = vocab_and_vectors or prepare_vocab(config)
    sets = load_training_sets(config)
    model = TweetTagger(ModelConfig(
        n_words=len(vocab.words), n_chars=len(vocab.chars), word_dim=config.word_dim,
        char_dim=config.char_dim, char_filters=config.char_filters, hidden=config.hidden,
        dilations=config.dilations, dropout=config.dropout, tweet_bow=config.tweet_bow,
        bow_dim=config.bow_dim, bow_from_vectors=config.bow_from_vectors,
        entity_tweet=config.entity_tweet,
        entity_detach_pooled=config.entity_detach_pooled, encoder=encoder))
    with torch.no_grad():
        model.word_embedding.weight.copy_(torch.from_numpy(matrix))
    embedding = model.word_embedding.weight
    embedding.requires_grad_(config.embedding_lr_scale > 0)
    groups = [{"params": [p for p in model.parameters() if p is not embedding]}]
    if config.embedding_lr_scale > 0:
        groups.append({"params": [embedding], "lr": config.lr * config.embedding_lr_scale})
    optimizer = torch.optim.Adam(groups, lr=config.lr)
    # Halve the learning rate when the dev score stalls for an epoch.
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                           patience=0)
    loss_fn = MultiTaskLoss(sets, config)
    labels = LabelSpace(labels_document())
    predict = torch_predictor(model, vocab, labels)
    best_score, best_state, best_dev, stale = -1.0, None, {}, 0
    history: list[dict] = []
    losses: list[float] = []
    for epoch in range(1, config.epochs + 1):
        model.train()
        batches = epoch_batches(sets, config, rng)
        running = 0.0
        bar = tqdm(batches, desc=f"{member} epoch {epoch}", unit="batch")
        for step, batch in enumerate(bar, start=1):
            feeds = tensors(batch, vocab, config, rng, train=True)
            outputs = model(*(feeds[n] for n in INPUT_NAMES))
            loss = loss_fn(outputs, batch, feeds)
            optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            losses.append(loss.item())
            running += loss.item()
            if step % 20 == 0:
                bar.set_postfix(loss=f"{running / step:.3f}")
        if not config.evaluate_dev:
            history.append({"epoch": epoch,
                            "train_loss": round(running / max(1, len(batches)), 4)})
            continue
        dev = evaluate(predict, config.data_dir, "dev", config.mitchell_folds,
                       config.dev_shares, config.sentiment_dev_topics)
        score = dev_objective(dev, exclude=config.dev_trained, tmsc=config.tmsc_train)
        scheduler.step(score)
        history.append({"epoch": epoch, "train_loss": round(running / max(1, len(batches)), 4),
                        "dev_objective": round(score, 2), "dev": dev})
        log.info("%s epoch %d loss %.3f dev %.2f (wnut16 %.1f wnut17 %.1f btc %.1f 4A %.3f "
                 "mitchell %.1f tmsc %.1f/%.1f)", member, epoch,
                 running / max(1, len(batches)), score, dev["wnut16"]["f1"],
                 dev["wnut17"]["f1"], dev["btc"]["f1"], dev["semeval2017_4a"]["macro_recall"],
                 dev["mitchell2013"]["f1"], dev["tmsc"]["entity"]["accuracy"],
                 dev["tmsc"]["entity"]["macro_f1"])
        if score > best_score:
            best_score, best_dev, stale = score, dev, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            stale += 1
        out_of_time = (config.time_budget_s is not None
                       and time.monotonic() - started > config.time_budget_s)
        if stale >= config.patience or out_of_time:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.fold_bow_projection()
    model.eval()
    calibration = (calibrate_heads(model, vocab, labels, config.data_dir, config.mitchell_folds,
                                   config.dev_shares)
                   if config.evaluate_dev else {})
    if config.evaluate_dev and config.tweet_prior_correction:
        calibration["tweet_sentiment"] = tweet_prior_correction(model, vocab, config.data_dir,
                                                                config.sentiment_dev_topics)
    return TrainResult(model, vocab, history, best_dev, coverage,
                       time.monotonic() - started, losses, calibration, encoder, seed)


def _train_member(config: TrainConfig, prepared, member: str, threads: int) -> TrainResult:
    """One member in a worker process, with the parent's torch thread count."""
    torch.set_num_threads(threads)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return train(config, prepared, member)


def train_ensemble(config: TrainConfig, vocab_and_vectors=None, jobs: int = 1) -> EnsembleResult:
    """Train one network per entry of ``config.encoders`` on the same vectors, then score
    their mean on the dev sets (the figure the recipe is chosen by).

    ``jobs`` > 1 trains members in that many worker processes at once (each with this
    process's torch thread count): every member is deterministic on its own, so the weights
    do not depend on it.
    """
    started = time.monotonic()
    prepared = vocab_and_vectors or prepare_vocab(config)
    log.info("training %d member(s) (%s), %d at a time", len(config.encoders),
             ", ".join(config.encoders), min(jobs, len(config.encoders)))
    if jobs > 1 and len(config.encoders) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        context = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state
        with ProcessPoolExecutor(min(jobs, len(config.encoders)), mp_context=context) as pool:
            futures = [pool.submit(_train_member, config, prepared, member,
                                   torch.get_num_threads())
                       for member in config.encoders]
            members = [future.result() for future in futures]
    else:
        members = [train(config, prepared, member) for member in config.encoders]
    model = (members[0].model if len(members) == 1
             else TweetEnsemble([member.model for member in members]))
    model.eval()
    dev: dict = {}
    objective = None
    if config.evaluate_dev:
        predict = torch_predictor(model, prepared[0], LabelSpace(labels_document()))
        dev = evaluate(predict, config.data_dir, "dev", config.mitchell_folds,
                       config.dev_shares, config.sentiment_dev_topics)
        objective = round(dev_objective(dev, exclude=config.dev_trained, tmsc=config.tmsc_train),
                          2)
        log.info("served model (mean of %d), calibrated: dev objective %.2f", len(members),
                 objective)
    return EnsembleResult(model, prepared[0], members, dev, objective, prepared[2],
                          time.monotonic() - started)


def head_summary() -> dict:
    """Which corpus trains which head (for the model card)."""
    return {head.name: {"output": head.output, "dataset": head.dataset,
                        "types": list(head.types)} for head in HEAD_BY_NAME.values()}
