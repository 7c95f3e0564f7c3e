"""Text checks on crowd-written prompts and responses, run before anyone is paid to verify.

Three kinds:

- **rules** from the campaign file (`demonstrations.text_rules`): length in characters and
  words, lines, and a pattern the text must contain (e.g. a numbered list);
- **topic**: a prompt that names another of the campaign's topics and not its own was
  written for the wrong slot (`topic_failure`); a list answering a prompt that shares
  entries with another topic's lists and none with its own topic's answers another
  topic (`TopicEntries`);
- **duplicates**: a text that is the same as, or nearly the same as, a text already
  written in this campaign or in any earlier campaign of the same database.

Duplicates are found with character shingles of a normalised text (lower case, list
numbering, punctuation and repeated whitespace removed, so a reordered or re-punctuated
copy normalises alike), MinHash signatures (numpy, `_PERMUTATIONS` hash functions) and
LSH banding to pick candidates, then the exact Jaccard similarity of the candidates'
shingle sets decides. Exact copies are caught by the normalised text's hash alone.
bench/bench_demonstrations.py measures the catch rate on simulated copiers and the cost.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from crowdloop.models.spec import TextRules

SHINGLE = 5  # characters per shingle
_PERMUTATIONS = 64
_BANDS = 16  # 16 bands of 4 rows: a pair at Jaccard 0.7 is a candidate with P ~ 0.98
_ROWS = _PERMUTATIONS // _BANDS
_PRIME = np.uint64((1 << 61) - 1)
_rng = np.random.default_rng(20260101)  # fixed: signatures must be comparable across runs
_A = _rng.integers(1, (1 << 61) - 1, size=_PERMUTATIONS, dtype=np.uint64)
_B = _rng.integers(0, (1 << 61) - 1, size=_PERMUTATIONS, dtype=np.uint64)

_NUMBERING = re.compile(r"^\s*(\d{1,3}\s*[.)]|[-*•])\s*", re.MULTILINE)
_NOT_WORD = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """What two copies of one text still share after cosmetic edits: case, punctuation,
    spacing, list numbering, and the order of a list's entries (a list's lines are sorted:
    the same entries in another order are the same list)."""
    text = _fold(text)
    lines = [line for line in text.splitlines() if line.strip()]
    listed = [line for line in lines if _NUMBERING.match(line)]
    if len(listed) >= 2:
        rest = [_clean(line) for line in lines if not _NUMBERING.match(line)]
        entries = sorted(_entry(line) for line in listed)
        return " ".join(part for part in (*rest, *entries) if part)
    return _entry(text)


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


def _entry(line: str) -> str:
    """A list line without its numbering or bullet, cleaned."""
    return _clean(_NUMBERING.sub("", line))


def _clean(text: str) -> str:
    return _SPACE.sub(" ", _NOT_WORD.sub(" ", text)).strip()


def shingles(norm: str, k: int = SHINGLE) -> set[int]:
    """Hashed character k-grams (the whole text when shorter than k)."""
    if len(norm) <= k:
        return {_h64(norm)}
    return {_h64(norm[i : i + k]) for i in range(len(norm) - k + 1)}


def _h64(s: str) -> int:
    # 61 bits. a*x + b wraps modulo 2^64 in numpy before the reduction modulo the prime:
    # not a textbook universal family, but only candidates are picked with it and the
    # exact Jaccard check decides, so a weaker hash costs recall measured in the bench.
    return int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big") >> 3


def minhash(sh: set[int]) -> np.ndarray:
    x = np.fromiter(sh, dtype=np.uint64, count=len(sh))
    return ((x[None, :] * _A[:, None] + _B[:, None]) % _PRIME).min(axis=1)


def jaccard(a: set[int], b: set[int]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


@dataclass
class _Entry:
    key: str
    shingles: set[int]
    scope: str | None


@dataclass
class DuplicateIndex:
    """Texts seen so far, searchable for exact and near duplicates.

    `threshold` is the Jaccard similarity of shingle sets from which a text counts as a
    near duplicate.
    """

    threshold: float = 0.7
    _exact: dict[str, str] = field(default_factory=dict)
    _entries: list[_Entry] = field(default_factory=list)
    _buckets: dict[tuple[int, bytes], list[int]] = field(default_factory=lambda: defaultdict(list))

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, key: str, text: str, scope: str | None = None) -> None:
        norm = normalise(text)
        self._exact.setdefault(_digest(norm), key)
        sh = shingles(norm)
        index = len(self._entries)
        self._entries.append(_Entry(key, sh, scope))
        for band in _bands(minhash(sh)):
            self._buckets[band].append(index)

    def add_many(self, texts: Iterable[tuple[str, str, str | None]]) -> None:
        for key, text, scope in texts:
            self.add(key, text, scope)

    def find(self, text: str, scope: str | None = None) -> tuple[str, float] | None:
        """The key of an earlier text this one duplicates, and their similarity.

        An exact copy (after normalising) is found anywhere. A near copy is looked for
        among texts of the same `scope` only when one is given: short prompts written
        from one pattern for different topics share most of their characters without
        being copies ("Name 5 well-known rivers" / "... mammals"); a copy taken from
        another topic is off-topic, which verifiers judge.
        """
        norm = normalise(text)
        exact = self._exact.get(_digest(norm))
        if exact is not None:
            return exact, 1.0
        sh = shingles(norm)
        best: tuple[str, float] | None = None
        seen: set[int] = set()
        for band in _bands(minhash(sh)):
            for i in self._buckets.get(band, ()):
                if i in seen:
                    continue
                seen.add(i)
                if scope is not None and self._entries[i].scope != scope:
                    continue
                sim = jaccard(sh, self._entries[i].shingles)
                if sim >= self.threshold and (best is None or sim > best[1]):
                    best = (self._entries[i].key, sim)
        return best


def _digest(norm: str) -> str:
    return hashlib.blake2b(norm.encode(), digest_size=16).hexdigest()


@dataclass(frozen=True)
class Signature:
    """What the database keeps of a text to find its copies later without the text:
    the normalised text's hash (exact copies), its MinHash signature and the signature's
    LSH band keys (near copies: a text sharing a band key is a candidate)."""

    digest: str
    minhash: bytes
    bands: tuple[int, ...]


def signature(text: str) -> Signature:
    norm = normalise(text)
    mh = minhash(shingles(norm))
    return Signature(_digest(norm), mh.tobytes(), tuple(_band_key(b) for b in _bands(mh)))


def _band_key(band: tuple[int, bytes]) -> int:
    # One signed 64-bit key per band (a BIGINT column on every backend); a collision of
    # two keys only adds a candidate, which the similarity check then turns down.
    number, rows = band
    digest = hashlib.blake2b(bytes([number]) + rows, digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def similarity(a: str, b: str) -> float:
    """The Jaccard similarity of two texts' shingle sets (after normalising)."""
    return jaccard(shingles(normalise(a)), shingles(normalise(b)))


def minhash_similarity(a: bytes, b: bytes) -> float:
    """The share of equal MinHash values: an estimate of the Jaccard similarity (standard
    error about 0.06 at 0.7 with 64 hashes), for a stored text whose words are gone."""
    x, y = np.frombuffer(a, dtype=np.uint64), np.frombuffer(b, dtype=np.uint64)
    return float(np.mean(x == y)) if x.size == y.size and x.size else 0.0


def _bands(signature: np.ndarray) -> list[tuple[int, bytes]]:
    return [(b, signature[b * _ROWS : (b + 1) * _ROWS].tobytes()) for b in range(_BANDS)]


def rule_failure(text: str, rules: TextRules) -> str | None:
    """Why the text breaks the campaign's rules for its kind, or None."""
    stripped = text.strip()
    if len(stripped) < rules.min_chars:
        return f"shorter than {rules.min_chars} characters ({len(stripped)})"
    if rules.max_chars is not None and len(stripped) > rules.max_chars:
        return f"longer than {rules.max_chars} characters ({len(stripped)})"
    words = len(stripped.split())
    if words < rules.min_words:
        return f"fewer than {rules.min_words} words ({words})"
    lines = sum(1 for line in stripped.splitlines() if line.strip())
    if lines < rules.min_lines:
        return f"fewer than {rules.min_lines} lines ({lines})"
    if rules.pattern is not None and re.search(rules.pattern, text, re.MULTILINE) is None:
        return f"does not match the required format {rules.pattern!r}"
    return None


_WORD = re.compile(r"\w+")


def _words(text: str) -> set[str]:
    """Case-folded words, a plural's final "s" dropped ("rivers" names "river")."""
    words = _WORD.findall(_fold(text))
    return {w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words}


def topic_failure(text: str, topic: str, topics: Iterable[str]) -> str | None:
    """Why a prompt is off-topic, or None: it names another of the campaign's `topics`
    (every word of that topic's name) and not its own (some word of it missing).

    Only that much, because it is certain: a prompt that names no topic may still be a
    fair request about its own (verifiers judge it, with the topic in the task). Left to
    verifiers, an off-topic prompt was accepted 3-2 whenever random or noisy verifiers
    not yet caught outnumbered careful ones (the bench's off_topic and mixed crowds at the
    demo's size: 1 off-topic row of 71 each over three seeds)."""
    if not topic:
        return None
    words = _words(text)
    own = _words(topic)
    if own <= words:
        return None
    for other in sorted(set(topics) - {topic}):
        named = _words(other)
        if named and named <= words and not named <= own:
            return f"off-topic: names {other!r}, not {topic!r}"
    return None


def list_entries(text: str) -> frozenset[str]:
    """A list's entries as `normalise` compares them (numbered or bulleted lines, case,
    punctuation and spacing folded); empty for text that is not a list of two or more."""
    listed = [line for line in _fold(text).splitlines() if _NUMBERING.match(line)]
    if len(listed) < 2:
        return frozenset()
    return frozenset(e for e in map(_entry, listed) if e)


# How much of the campaign's own evidence a list must contradict to be called off-topic:
# its topic's answers known from this many lists, and this many more of its entries
# found in another topic's lists than in its own topic's. An honest list of the demo's
# has at most one entry from outside its topic, so it cannot share two more with another
# topic; an off-topic one shares its 4-5 entries with its real topic's lists, and its
# slot's lists may hold one of them as a wrong entry.
OWN_LISTS_NEEDED = 2
SHARED_WITH_OTHER = 2


@dataclass
class TopicEntries:
    """The entries of each topic's answer lists in a campaign, to tell which topic a new
    list answers (`failure`).

    Only that much, because it is certain enough to reject without a verifier: a list
    that repeats more of another topic's entries than of its own. Left to verifiers,
    such lists were accepted 3-2 and 4-1 when random or noisy verifiers not yet caught
    were in the majority (the bench's off_topic crowd at the demo's size, seeds 0 and 1
    at aaee089: 2 rows of 70). Text that is not a list, or a topic with fewer than
    `OWN_LISTS_NEEDED` lists yet, is left to the verifiers."""

    entries: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    lists: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, topic: str | None, text: str) -> None:
        found = list_entries(text)
        if topic and found:
            self.entries[topic] |= found
            self.lists[topic] += 1

    def failure(self, text: str, topic: str | None) -> str | None:
        """Why the list answers another topic than `topic`, or None."""
        found = list_entries(text)
        if not topic or not found or self.lists.get(topic, 0) < OWN_LISTS_NEEDED:
            return None
        shared = {other: len(found & seen) for other, seen in self.entries.items()}
        other = max(sorted(shared), key=lambda t: shared[t])
        own = shared[topic]
        if other == topic or shared[other] < own + SHARED_WITH_OTHER:
            return None
        return f"off-topic: {shared[other]} entries of {other!r} lists, {own} of {topic!r}'s"
