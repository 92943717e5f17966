"""The joint model: char-CNN + word embeddings -> contextual encoder -> heads, and the mean of
several such networks that the artifact serves.

Encoders: dilated convolutions (ID-CNN: every token computed in parallel, which a one-thread
onnxruntime session at batch 32-256 rewards; dilations 1, 2, 4 see 15 tokens around each word),
a BiLSTM, or the BiLSTM after the convolutions. Alone they score alike; averaged they type
entities better than any one of them (README, "Three encoders, averaged"), at the LSTMs' cost in
speed. Padding never leaks into a result: characters and tokens beyond a length are masked
after every layer and never enter an LSTM state, so a tweet gets the same scores alone or in
any batch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torch import nn

from model_export.heads import NER_HEADS

ENCODERS = ("idcnn", "bilstm", "idcnn-bilstm")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Sizes of the network (stored in the model card)."""

    n_words: int
    n_chars: int
    word_dim: int = 100
    char_dim: int = 16
    char_filters: int = 32
    hidden: int = 128
    dilations: tuple[int, ...] = (1, 2, 4)
    dropout: float = 0.3
    # The tweet-sentiment head also reads the mean word vector (a fastText-style bag of words
    # beside the encoder's pooled features).
    tweet_bow: bool = False
    # Width of a bag-of-words table of the tweet head's own (0: the bag averages the shared
    # word vectors). With its own table the shared vectors can stay frozen for NER, where
    # unseen entities must keep their FastText neighbourhood, while sentiment still learns
    # word polarities.
    bow_dim: int = 0
    # Train the bag-of-words table as a learnt projection of the frozen word vectors plus a
    # per-word residual that starts at zero. A word the 4A training tweets never hold then
    # enters the tweet head through its FastText neighbours' polarity, not as the random row
    # it would keep in a table of its own. ``fold_bow_projection`` turns it back into one
    # plain table before export, so the graph and the artifact's size do not change.
    bow_from_vectors: bool = False
    # The entity-sentiment head also reads the tweet head's hidden layer, which sees the
    # bag-of-words polarities learnt on 48k SemEval tweets: a Mitchell tweet usually has one
    # target, whose polarity is often the tweet's. It reads a detached copy, so the entity
    # losses do not pull the tweet head away from tweet sentiment.
    entity_tweet: bool = False
    # The entity-sentiment head reads a detached copy of the pooled tweet states, so entity
    # losses train the encoder only through the token states of the mention itself.
    entity_detach_pooled: bool = False
    # "idcnn": the dilated convolutions alone; "bilstm": one bidirectional LSTM layer (width
    # ``hidden // 2`` per direction) instead of them; "idcnn-bilstm": the LSTM after them.
    encoder: str = "idcnn"

    def to_dict(self) -> dict:
        return asdict(self)


class TweetTagger(nn.Module):
    """Shared encoder with NER heads (one per corpus), entity and tweet sentiment heads.

    ``forward`` returns the outputs in :data:`model_export.heads.OUTPUT_NAMES` order.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.word_embedding = nn.Embedding(config.n_words, config.word_dim, padding_idx=0)
        self.char_embedding = nn.Embedding(config.n_chars, config.char_dim, padding_idx=0)
        self.char_conv = nn.Conv1d(config.char_dim, config.char_filters, 3, padding=1)
        self.project = nn.Conv1d(config.word_dim + config.char_filters, config.hidden, 1)
        if config.encoder not in ENCODERS:
            raise ValueError(f"unknown encoder {config.encoder!r}; one of {ENCODERS}")
        self.blocks = nn.ModuleList(
            nn.Conv1d(config.hidden, config.hidden, 3, padding=d, dilation=d)
            for d in (config.dilations if "idcnn" in config.encoder else ())
        )
        # Two one-way LSTMs rather than nn.LSTM(bidirectional=True): the backward one reads
        # each tweet reversed within its own length, so padding never enters a real token's
        # state and a tweet scores the same in any batch (the ONNX LSTM op then needs no
        # sequence lengths).
        self.lstm_forward = self.lstm_backward = None
        if "bilstm" in config.encoder:
            self.lstm_forward = nn.LSTM(config.hidden, config.hidden // 2, batch_first=True)
            self.lstm_backward = nn.LSTM(config.hidden, config.hidden // 2, batch_first=True)
        self.dropout = nn.Dropout(config.dropout)
        self.ner_heads = nn.ModuleList(nn.Linear(config.hidden, len(h.tags)) for h in NER_HEADS)
        self.entity_token = nn.Linear(config.hidden, 3)
        self.entity_context = nn.Linear(2 * config.hidden, 3)
        self.bow_embedding = (nn.Embedding(config.n_words, config.bow_dim, padding_idx=0)
                              if config.tweet_bow and config.bow_dim > 0 else None)
        self.bow_project = None
        if self.bow_embedding is not None and config.bow_from_vectors:
            nn.init.zeros_(self.bow_embedding.weight)
            self.bow_project = nn.Linear(config.word_dim, config.bow_dim, bias=False)
        elif self.bow_embedding is not None:
            nn.init.normal_(self.bow_embedding.weight, std=0.1)
            with torch.no_grad():
                self.bow_embedding.weight[0].zero_()
        bow_width = (config.bow_dim or config.word_dim) if config.tweet_bow else 0
        tweet_in = 2 * config.hidden + bow_width
        self.tweet_hidden = nn.Linear(tweet_in, 64)
        self.tweet_out = nn.Linear(64, 3)
        self.entity_tweet = nn.Linear(64, 3) if config.entity_tweet else None

    def encode_chars(self, char_ids: torch.Tensor) -> torch.Tensor:
        """[B,T,C] char ids -> [B,T,F] max-pooled char-CNN features (padding chars masked)."""
        batch, steps, chars = char_ids.shape
        flat = char_ids.reshape(batch * steps, chars)
        present = (flat > 0).unsqueeze(1).to(torch.float32)  # [B*T,1,C]
        emb = self.char_embedding(flat).transpose(1, 2) * present
        conv = torch.relu(self.char_conv(emb)) * present
        return conv.max(dim=2).values.reshape(batch, steps, -1)

    def bilstm(self, hidden: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """[B,H,T] -> [B,H,T] states of both directions (padding positions are garbage and
        masked by the caller)."""
        seq = hidden.transpose(1, 2)  # [B,T,H]
        steps = seq.shape[1]
        position = torch.arange(steps, device=seq.device).unsqueeze(0)  # [1,T]
        last = lengths.unsqueeze(1) - 1
        # Reverse the first ``length`` steps of each row, leave the padding where it is.
        order = torch.where(position <= last, last - position, position)  # [B,T]
        order = order.unsqueeze(2).expand(-1, -1, seq.shape[2])
        ahead, _ = self.lstm_forward(seq)
        behind, _ = self.lstm_backward(seq.gather(1, order))
        order = order[:, :, : behind.shape[2]]
        behind = behind.gather(1, order)
        return torch.cat([ahead, behind], dim=2).transpose(1, 2)

    def _encode(self, word_ids: torch.Tensor, char_ids: torch.Tensor, lengths: torch.Tensor,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encoder states, word vectors [B,T,D] and padding mask [B,1,T], computed once for
        the heads of ``forward``."""
        steps = word_ids.shape[1]
        mask = torch.arange(steps, device=word_ids.device).unsqueeze(0) < lengths.unsqueeze(1)
        maskf = mask.unsqueeze(1).to(torch.float32)  # [B,1,T]
        words = self.word_embedding(word_ids)
        features = torch.cat([words, self.encode_chars(char_ids)], -1)
        hidden = torch.relu(self.project(self.dropout(features).transpose(1, 2))) * maskf
        for block in self.blocks:
            hidden = (hidden + torch.relu(block(self.dropout(hidden)))) * maskf
        if self.lstm_forward is not None and self.lstm_backward is not None:
            hidden = (hidden + self.bilstm(self.dropout(hidden), lengths)) * maskf
        return hidden, words, maskf

    def forward(
        self, word_ids: torch.Tensor, char_ids: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        hidden, words, maskf = self._encode(word_ids, char_ids, lengths)
        tokens = self.dropout(hidden.transpose(1, 2))  # [B,T,H]
        count = lengths.clamp(min=1).unsqueeze(1).to(torch.float32)
        mean = hidden.sum(dim=2) / count
        peak = hidden.masked_fill(maskf == 0, -1e4).max(dim=2).values
        peak = torch.where(lengths.unsqueeze(1) > 0, peak, torch.zeros_like(peak))
        pooled = self.dropout(torch.cat([mean, peak], dim=1))  # [B,2H]
        ner = tuple(head(tokens) for head in self.ner_heads)
        entity_pooled = pooled.detach() if self.config.entity_detach_pooled else pooled
        entity = self.entity_token(tokens) + self.entity_context(entity_pooled).unsqueeze(1)
        tweet_in = pooled
        if self.config.tweet_bow:
            bag_words = words if self.bow_embedding is None else self.bow_embedding(word_ids)
            if self.bow_project is not None:
                bag_words = bag_words + self.bow_project(words)
            bag = (bag_words * maskf.transpose(1, 2)).sum(dim=1) / count  # [B,D]
            tweet_in = torch.cat([pooled, self.dropout(bag)], dim=1)
        tweet_state = self.dropout(torch.relu(self.tweet_hidden(tweet_in)))
        tweet = self.tweet_out(tweet_state)
        if self.entity_tweet is not None:
            entity = entity + self.entity_tweet(tweet_state.detach()).unsqueeze(1)
        return (*ner, entity, tweet)

    def fold_bow_projection(self) -> None:
        """Write the projected word vectors into the bag-of-words table and drop the
        projection: the same function, served as the one table the exporter and the loaders
        know (``bow_from_vectors`` is then off in ``config``, which the model card stores)."""
        if self.bow_project is None or self.bow_embedding is None:
            return
        with torch.no_grad():
            self.bow_embedding.weight += self.word_embedding.weight @ self.bow_project.weight.T
        self.bow_project = None
        self.config = replace(self.config, bow_from_vectors=False)


class TweetEnsemble(nn.Module):
    """Several trained taggers read the same inputs; every output is the members' mean.

    Members trained with different encoders (dilated convolutions, a BiLSTM, both) make
    different mistakes, and their mean types entities better than any one of them. They
    share one frozen word table (the same FastText vectors), so the artifact stores it once.
    """

    def __init__(self, members: list[TweetTagger]) -> None:
        super().__init__()
        shared = members[0].word_embedding
        for member in members[1:]:
            if not torch.equal(member.word_embedding.weight, shared.weight):
                raise ValueError("ensemble members must share one word table")
            member.word_embedding = shared
        self.members = nn.ModuleList(members)

    @property
    def word_embedding(self) -> nn.Embedding:
        return self.members[0].word_embedding

    def forward(
        self, word_ids: torch.Tensor, char_ids: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        outputs = [member(word_ids, char_ids, lengths) for member in self.members]
        return tuple(torch.stack(values).mean(dim=0) for values in zip(*outputs, strict=True))
