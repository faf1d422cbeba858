"""Text -> vector for the attempt memory, with no model download.

The default embedder is feature hashing: word unigrams and bigrams plus character 3-5-grams of the
lowercased text, each hashed with a *stable* hash (blake2b) into `dim` signed buckets. It needs no
weights, no network and no new dependency, and it is deterministic across processes and machines,
so a memory written on one run is searchable on the next. Attempt documents are templated text
whose informative parts are domain words, model names and hyperparameters; lexical overlap is what
"a similar attempt" means there, and hashing captures it.

`make_embedder` also builds chromadb's sentence-transformers / OpenAI / Gemini functions for users
who want semantic recall; those are imported lazily and never needed by the tests.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from functools import lru_cache
from itertools import pairwise
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

HASHING_NAME = "tunecrew-hashing"
DEFAULT_DIM = 1024
# Bump when tokenisation, stopwords or weights change: vectors of two versions are not comparable,
# and the version is part of the config that a collection records and checks on reopen.
FEATURES_VERSION = 1

# Each feature family is L2-normalised on its own, then mixed with these weights: whole words carry
# the domain signal; character n-grams make "schedule"/"scheduling" or "Qwen2"/"Qwen2.5" overlap.
_WEIGHTS = {"word": 1.0, "bigram": 0.5, "char": 0.8}
_CHAR_NGRAMS = (3, 4, 5)
_WORD_RE = re.compile(r"[a-z0-9][a-z0-9_.+\-]*[a-z0-9]|[a-z0-9]")
# Words every document shares add a floor of similarity between unrelated attempts, so they are not
# features: English function words, and the field labels of tunecrew's attempt documents (memory
# documents are templated; their labels say nothing about which task an attempt was for).
_STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "by", "for", "from", "has", "have", "in", "is", "it", "its", "of", "on",
     "or", "that", "the", "this", "to", "was", "were", "with", "which", "into", "than", "then", "per", "not", "no",
     "you", "your", "who",
     "scenario", "domain", "data", "format", "rows", "language", "token", "tokens", "lengths", "words", "tokenizer",
     "prompt", "response", "mean", "p95", "max", "vocabulary", "base", "model", "family", "size", "hardware",
     "training", "method", "lora", "rank", "alpha", "learning", "rate", "epochs", "batch", "seq", "len", "outcome",
     "status", "train", "loss", "eval", "steps", "evaluation", "samples", "rubric", "diagnosis", "decision"]
)
_HAS_LETTER = re.compile(r"[a-z]")


@lru_cache(maxsize=1 << 18)
def _bucket(feature: str, dim: int) -> tuple[int, float]:
    """Stable (bucket, sign) of a feature: blake2b, never Python's per-process salted `hash()`."""
    digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
    value = int.from_bytes(digest, "little")
    return value % dim, (1.0 if (value >> 63) & 1 else -1.0)


def _features(text: str) -> dict[str, Counter[str]]:
    """Feature counts per family, prefixed so a word never collides with an equal char n-gram."""
    lowered = text.lower()
    words = _WORD_RE.findall(lowered)
    content = [w for w in words if w not in _STOPWORDS and _HAS_LETTER.search(w)]
    families: dict[str, Counter[str]] = {
        "word": Counter("w:" + w for w in content),
        "bigram": Counter(f"b:{a} {b}" for a, b in pairwise(content)),
        "char": Counter(),
    }
    chars = families["char"]
    for word in content:
        padded = f" {word} "
        for n in _CHAR_NGRAMS:
            for i in range(len(padded) - n + 1):
                chars["c:" + padded[i : i + n]] += 1
    return families


def hash_embed(text: str, dim: int = DEFAULT_DIM) -> np.ndarray:
    """One L2-normalised float32 vector; all-zero text gives the zero vector's safe stand-in."""
    out = np.zeros(dim, dtype=np.float32)
    for family, counts in _features(text).items():
        if not counts:
            continue
        block = np.zeros(dim, dtype=np.float64)
        for feature, tf in counts.items():
            index, sign = _bucket(feature, dim)
            block[index] += sign * (1.0 + math.log(tf))  # sublinear tf: repeats saturate
        block_norm = np.linalg.norm(block)
        if block_norm > 0:
            out += (_WEIGHTS[family] * block / block_norm).astype(np.float32)
    norm = float(np.linalg.norm(out))
    if norm == 0.0:
        # Cosine distance is undefined for a zero vector; a fixed unit vector keeps Chroma happy and
        # is (nearly) orthogonal to every real document.
        out[0] = 1.0
        return out
    return out / norm


@register_embedding_function
class HashingEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function for feature-hashed text (see module docstring).

    Registered under ``tunecrew-hashing``: importing this module before reopening a persisted
    collection lets Chroma rebuild the function from the collection's stored config.
    """

    def __init__(self, dim: int = DEFAULT_DIM) -> None:
        self.validate_config({"dim": dim})
        self.dim = dim

    def __call__(self, input: Documents) -> Embeddings:
        return [hash_embed(text, self.dim) for text in input]

    @staticmethod
    def name() -> str:
        return HASHING_NAME

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine", "ip", "l2"]

    def get_config(self) -> dict[str, Any]:
        return {"dim": self.dim, "version": FEATURES_VERSION}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> HashingEmbeddingFunction:
        HashingEmbeddingFunction.validate_config(config)
        return HashingEmbeddingFunction(dim=int(config.get("dim", DEFAULT_DIM)))

    @staticmethod
    def validate_config(config: dict[str, Any]) -> None:
        dim = config.get("dim", DEFAULT_DIM)
        if isinstance(dim, bool) or not isinstance(dim, int) or dim < 16:
            raise ValueError(f"tunecrew-hashing dim={dim!r}: use an integer >= 16 (default {DEFAULT_DIM})")
        version = config.get("version", FEATURES_VERSION)
        if version != FEATURES_VERSION:
            raise ValueError(
                f"tunecrew-hashing vectors of version {version!r} were made by another tunecrew release "
                f"(this one makes version {FEATURES_VERSION}); use a new --memory location or that release"
            )

    def validate_config_update(self, old_config: dict[str, Any], new_config: dict[str, Any]) -> None:
        if new_config.get("dim", old_config.get("dim")) != old_config.get("dim"):
            raise ValueError("tunecrew-hashing: dim cannot change on an existing collection; use a new collection")


def make_embedder(spec: str = "hashing") -> EmbeddingFunction[Documents]:
    """Build the embedding function named by a CLI-style spec.

    ``hashing`` or ``hashing:DIM`` (default; offline), ``st:/path/to/sentence-transformers-model``
    (a local model dir; nothing is downloaded when the path exists), ``openai:MODEL`` (key in
    OPENAI_API_KEY or CHROMA_OPENAI_API_KEY), ``gemini:MODEL`` (key in GEMINI_API_KEY or
    GOOGLE_API_KEY).
    """
    kind, _, arg = spec.strip().partition(":")
    kind = kind.lower()
    if kind == "hashing":
        if arg and not arg.isdigit():
            raise ValueError(f"embedder {spec!r}: the hashing dimension must be an integer, e.g. hashing:1024")
        return HashingEmbeddingFunction(dim=int(arg) if arg else DEFAULT_DIM)
    if kind == "st":
        if not arg:
            raise ValueError("embedder 'st:' needs a model path, e.g. st:/models/all-MiniLM-L6-v2")
        try:
            from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction
            return SentenceTransformerEmbeddingFunction(model_name=arg, normalize_embeddings=True)
        except (ImportError, ValueError) as exc:
            raise RuntimeError(
                f"embedder {spec!r} is unavailable ({exc}); `pip install sentence-transformers` and point "
                "st: at a local model directory, or use the default --embedder hashing"
            ) from exc
    if kind == "openai":
        import os

        env = "CHROMA_OPENAI_API_KEY" if os.environ.get("CHROMA_OPENAI_API_KEY") else "OPENAI_API_KEY"
        try:
            from chromadb.utils.embedding_functions import OpenAIEmbeddingFunction
            return OpenAIEmbeddingFunction(model_name=arg or "text-embedding-3-small", api_key_env_var=env)
        except (ImportError, ValueError) as exc:
            raise RuntimeError(
                f"embedder {spec!r} is unavailable ({exc}); install `openai` and set {env}, "
                "or use the default --embedder hashing"
            ) from exc
    if kind == "gemini":
        import os

        env = ("GEMINI_API_KEY" if os.environ.get("GEMINI_API_KEY") or not os.environ.get("GOOGLE_API_KEY")
               else "GOOGLE_API_KEY")
        try:
            from chromadb.utils.embedding_functions import GoogleGeminiEmbeddingFunction
            return GoogleGeminiEmbeddingFunction(model_name=arg or "gemini-embedding-001", api_key_env_var=env)
        except (ImportError, ValueError) as exc:
            raise RuntimeError(
                f"embedder {spec!r} is unavailable ({exc}); install `google-genai` and set {env}, "
                "or use the default --embedder hashing"
            ) from exc
    raise ValueError(
        f"unknown embedder {spec!r}: use 'hashing', 'st:/path/to/model', 'openai:MODEL' or 'gemini:MODEL'"
    )
