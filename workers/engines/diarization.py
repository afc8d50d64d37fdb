"""Who speaks when, offline, overlap included: the pipeline pyannote.audio 3.x runs, from its parts.

1. **Segmentation** (pyannote segmentation-3.0, ``workers.engines.speaker_models``) over 10 s
   chunks every ``chunk_step`` s: each chunk's frames (16.9 ms) say which of up to 3 *local*
   speakers talk, two at once where they overlap.
2. **Embeddings** per unit, a unit being one local speaker's speech in one chunk (cut in two
   at a pause where both sides hold ``split_seconds`` of solo speech: the segmentation sometimes
   keeps two voices taking turns as one local speaker): CAM++ over at most ``embedding_seconds``
   of the unit's solo speech (overlapped frames would mix two voices).
3. **Clustering** of the embeddings of units with ``min_embedded_seconds`` of solo speech, across
   the whole file: agglomerative, average linkage, cosine distance cut at ``threshold``, clusters
   under ``min_cluster_size`` joining the nearest larger one, so the number of speakers is found,
   not given; MIN_SPEAKERS / MAX_SPEAKERS bound it. Every unit then takes its nearest cluster
   centre (a short one, its local speaker's); two local speakers of one chunk that talk at once
   never become one speaker.
4. **Reconstruction**: the chunks' soft activations, now per global speaker, are averaged over
   every chunk that covers a frame (a speaker a chunk does not hear there counts 0, as pyannote
   aggregates: one chunk whose local speaker runs on past a change of voice is outvoted by the
   others); a frame is speech where the mean P(anyone talks) passes ``onset``, and keeps
   the ``k`` most active speakers there, ``k`` being the expected number of people talking,
   rounded, 1 or 2. Turns may therefore overlap.

The parameters are a frozen set (``DiarizationParameters``) chosen on the ``tune`` half of
``python -m bench diarization`` and reported on its ``test`` half. Speakers are named S1, S2, …
in order of first appearance. No speech gives no turns.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from typing import Callable

import numpy as np

from workers.core.contracts import Engine
from workers.core.engines import SAMPLE_RATE, Turn
from workers.core.settings import SpeakerSettings
from workers.engines import speaker_models, vad
from workers.engines.device import torch_device
from workers.engines.vad import Span

log = logging.getLogger(__name__)

MAX_CLUSTERED = 3000  # embeddings clustered at once (about 4 hours of speech at the default step)
SEGMENTATION_BATCH = 8  # 10 s chunks at once: SincNet's first layer holds 80 x 16,000 floats per chunk
EMBEDDING_BATCH = 16
ENGINE_NAME = "pyannote-pipeline"


def within_bounds(tree: np.ndarray, labels: np.ndarray, n: int, min_speakers: int, max_speakers: int) -> np.ndarray:
    """``labels`` cut from the linkage ``tree`` of ``n`` embeddings, re-cut to MAX_SPEAKERS clusters when they found
    more, or to MIN_SPEAKERS (at most ``n``) when they found fewer; 0 is no bound."""
    from scipy.cluster.hierarchy import fcluster

    found = len(set(labels))
    if max_speakers and found > max_speakers:
        return fcluster(tree, t=max_speakers, criterion="maxclust")
    if min_speakers and found < min_speakers:
        return fcluster(tree, t=min(min_speakers, n), criterion="maxclust")
    return labels


def cluster_sampled(embeddings: np.ndarray, labels_of: Callable[[np.ndarray], np.ndarray],
                    most: int = MAX_CLUSTERED) -> np.ndarray:
    """Cluster labels of unit-length embeddings by ``labels_of``. Past ``most``, an even sample is clustered and every
    embedding joins the nearest cluster's centre: average linkage needs memory and time in the square of its input."""
    if len(embeddings) <= most:
        return labels_of(embeddings)
    sample = embeddings[np.linspace(0, len(embeddings) - 1, most).astype(int)]
    labels = labels_of(sample)
    centres = np.stack([sample[labels == k].mean(axis=0) for k in np.unique(labels)])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return np.unique(labels)[np.argmax(embeddings @ centres.T, axis=1)]


@dataclass(frozen=True)
class DiarizationParameters:
    """The pipeline's hyper-parameters, chosen on the ``tune`` half of ``python -m bench diarization``
    (AMI EN2001a, EN2006a, trn03 and three assembled conversations: pooled 11.5 % DER at ±0.25 s, the
    middle of a plateau from ``threshold`` 0.525 to 0.6 within a point) among the settings under which
    the four joined-reader conversations of tests/unit/test_speakers_real.py come out right; the sweep
    (cached segmentations and embeddings, all four parts printed) also showed the ``test`` half, which
    decided nothing. ``min_cluster_size`` and ``min_cluster_share`` are pyannote 3.1's rule
    (min(12, 10 % of the embeddings)): on a 30 s file a speaker of two embeddings counts, on an hour
    a stray dozen does not. Tried and left: ``chunk_step`` 2.5 (tune 15.9 % at best, fewer
    embeddings per speaker) and 1.0 (2.5x the CPU time), ``embedding_seconds`` 3.0 (no better, 1.5x
    the embedding time), centroid linkage (tune 21.3 %), Ward linkage (its distances grow with the
    number of embeddings, so one threshold cannot suit a minute and two hours), ``onset`` 0.1-0.5
    (0.3 best on the AMI tune half: lower finds quiet speech but adds more false alarm and
    confusion), a lower bound on the speaker count from the most voices one chunk holds (never
    more than two with solo speech, so no effect), embeddings centred on the file's mean (tune
    18.0 % at best), and embedding only every other chunk with the others borrowing the embedding
    of the same moments' speech (47 % fewer embeddings, so about 1.5x faster, but tune 13.2 %)."""
    chunk_step: float = 1.5          # seconds between the starts of 10 s segmentation chunks
    embedding_seconds: float = 2.0   # most solo speech one embedding is made from
    min_embedded_seconds: float = 0.5  # less solo speech in a stretch: matched to a cluster, never founds one
    split_pause: float = 0.25        # a local speaker's pause this long may cut its speech in two units,
    split_seconds: float = 1.5       # when each side holds this much solo speech
    linkage: str = "average"         # scipy linkage: "average" on cosine distances, or "centroid" / "ward" (euclidean)
    threshold: float = 0.55          # linkage distance at which clusters stop merging
    min_cluster_size: int = 12       # smaller clusters join the nearest larger one (a stray embedding is no speaker),
    min_cluster_share: float = 0.1   # but a cluster of this share of the embeddings is large enough (short files)
    onset: float = 0.3               # a frame is speech where the chunks' mean P(anyone talks) passes this
    min_turn_seconds: float = 0.0    # shorter turns are dropped
    min_gap_seconds: float = 0.0     # shorter pauses inside one speaker's speech are filled


@dataclass(frozen=True)
class Chunks:
    """Segmentation of every chunk: ``active[c, f, k]`` local speaker k talks in frame f of chunk c
    (the most probable powerset class), ``soft`` the probability of it."""
    starts: np.ndarray  # (chunks,) seconds
    active: np.ndarray  # (chunks, frames, local speakers) bool
    soft: np.ndarray    # (chunks, frames, local speakers) float32
    speech: np.ndarray  # (chunks, frames) float32: P(anyone talks)


@dataclass(frozen=True)
class Unit:
    """One stretch of one local speaker's speech in one chunk: what is embedded and clustered.
    Frames ``first:end`` of the chunk are its own; ``frames`` marks those it is embedded from."""
    chunk: int
    local: int
    first: int
    end: int
    founder: bool  # enough solo speech to found a cluster
    frames: np.ndarray


class SpeakerDiarizer:
    @classmethod
    def from_settings(cls, speakers: SpeakerSettings, device: str) -> "SpeakerDiarizer":
        """The diarizer of SPEAKERS settings, on the SER service's device."""
        return cls(device=device, min_speakers=speakers.min_speakers, max_speakers=speakers.max_speakers)

    def __init__(self, *, device: str = "auto", min_speakers: int = 0, max_speakers: int = 0,
                 parameters: DiarizationParameters = DiarizationParameters()) -> None:
        import torch

        device = torch_device(device)
        self._torch = torch
        self.device = device
        self.segmentation = speaker_models.load_segmentation(device)
        self.embedding = speaker_models.load_embedding(device)
        self._banks = torch.from_numpy(speaker_models._mel_banks()).to(device)
        self.min_speakers, self.max_speakers = min_speakers, max_speakers
        self.parameters = parameters
        self.engine = diarizer_engine(parameters, min_speakers, max_speakers)

    def turns(self, audio: np.ndarray) -> list[Turn]:
        torch, threads = self._torch, self._torch.get_num_threads()
        # Small recurrent and convolutional layers: a second thread gains little, and beside the
        # Whisper engines (which use every core) OpenMP's spinning made the segmentation 10x slower.
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                chunks = self.segment(audio)
                units = self._units(chunks)
                if not units:
                    return []
                embeddings = self._embeddings(audio, chunks, units)
        finally:
            torch.set_num_threads(threads)
        labels = self._clustered(units, embeddings)
        return _named(self._reconstructed(chunks, units, labels, len(audio) / SAMPLE_RATE))

    def segment(self, audio: np.ndarray) -> Chunks:
        torch, seg = self._torch, self.segmentation
        window, step = int(seg.chunk_seconds * SAMPLE_RATE), int(self.parameters.chunk_step * SAMPLE_RATE)
        padded = np.pad(audio.astype(np.float32), (0, max(0, window - len(audio))))
        starts = list(range(0, len(padded) - window + 1, step))
        if starts[-1] + window < len(padded):
            starts.append(len(padded) - window)
        active, soft, speech = [], [], []
        for b in range(0, len(starts), SEGMENTATION_BATCH):
            batch = np.stack([padded[s:s + window] for s in starts[b:b + SEGMENTATION_BATCH]])[:, None, :]
            classes = seg.model(torch.from_numpy(batch).to(self.device)).exp().float().cpu().numpy()
            active.append(seg.powerset[classes.argmax(axis=-1)] > 0)
            soft.append(classes @ seg.powerset)
            speech.append(1 - classes[..., 0])
        return Chunks(np.asarray(starts) / SAMPLE_RATE, np.concatenate(active), np.concatenate(soft),
                      np.concatenate(speech))

    def _units(self, chunks: Chunks) -> list[Unit]:
        """Each local speaker's speech in a chunk, cut at its pauses of ``split_pause`` s or more
        where the stretches on both sides hold ``split_seconds`` of solo speech each:
        segmentation-3.0 sometimes keeps two voices that take turns with a pause between as one
        local speaker (two clean readers in the bench), so such long stretches are embedded and
        clustered on their own; shorter ones stay with their neighbour. A unit owns the chunk's
        frames up to halfway to the next unit of its local speaker."""
        p, step = self.parameters, self.segmentation.frame_step
        units = []
        frames = chunks.active.shape[1]
        index = np.arange(frames)
        for c in range(len(chunks.starts)):
            talking = chunks.active[c].sum(axis=1)
            for k in range(chunks.active.shape[2]):
                mine = chunks.active[c, :, k]
                if mine.sum() * step < 0.1:
                    continue
                solo = mine & (talking == 1)
                groups: list[list[int]] = []
                for first, end in _runs(mine, p.split_pause / step):
                    long = solo[first:end].sum() * step >= p.split_seconds
                    if groups and not (long and solo[groups[-1][0]:groups[-1][1]].sum() * step >= p.split_seconds):
                        groups[-1][1] = end
                    else:
                        groups.append([first, end])
                for i, (first, end) in enumerate(groups):
                    own_first = 0 if i == 0 else (groups[i - 1][1] + first) // 2
                    own_end = frames if i == len(groups) - 1 else (end + groups[i + 1][0]) // 2
                    inside = (index >= first) & (index < end)
                    enough = (solo & inside).sum() * step >= p.min_embedded_seconds
                    units.append(Unit(c, k, own_first, own_end, bool(enough), (solo if enough else mine) & inside))
        return units

    def _embeddings(self, audio: np.ndarray, chunks: Chunks, units: list[Unit]) -> np.ndarray:
        """L2-normalised CAM++ embeddings of the units' chosen frames (at most ``embedding_seconds``),
        in batches of similar length; a batch's audio is cut out only when it is embedded, so memory
        does not grow with the recording."""
        torch, p, step = self._torch, self.parameters, self.segmentation.frame_step
        cap = int(p.embedding_seconds * SAMPLE_RATE)

        def wave(u: Unit) -> np.ndarray:
            samples = _frames_audio(audio, chunks.starts[u.chunk], u.frames, step)
            middle = max(0, (len(samples) - cap) // 2)
            samples = samples[middle:middle + cap]
            return np.pad(samples, (0, max(0, 400 - len(samples))))  # at least one 25 ms frame

        embeddings = np.zeros((len(units), speaker_models.EMBEDDING_DIM), np.float32)
        order = sorted(range(len(units)), key=lambda i: units[i].frames.sum())
        for b in range(0, len(order), EMBEDDING_BATCH):
            group = order[b:b + EMBEDDING_BATCH]
            waves = [wave(units[i]) for i in group]
            # one batch shares one length: its longer members are cut to the shortest (sorted by
            # length, they differ little), rounded down to 0.5 s steps: few input shapes keep
            # the allocator from holding memory for every shape it has seen
            shortest = min(len(w) for w in waves)
            shortest = max(400, shortest - shortest % (SAMPLE_RATE // 2)) if shortest >= SAMPLE_RATE // 2 else shortest
            feats = [speaker_models.kaldi_fbank(torch.from_numpy(w[:shortest]).to(self.device), self._banks)
                     for w in waves]
            embeddings[group] = self.embedding(torch.stack(feats)).float().cpu().numpy()
        norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
        return embeddings / np.maximum(norms, 1e-9)

    def _clustered(self, units: list[Unit], embeddings: np.ndarray) -> np.ndarray:
        """The global speaker of each unit. Units with enough solo speech found the clusters; each
        unit then takes its nearest cluster centre, except that a unit too short to found one
        takes the cluster of the longest founding stretch of its own local speaker in its chunk,
        and two local speakers of one chunk that talk at once never share a speaker."""
        founders = np.array([u.founder for u in units])
        if not founders.any():
            founders[:] = True
        found = self._cluster(embeddings[founders])
        names = np.unique(found)
        centroids = np.stack([embeddings[founders][found == n].mean(axis=0) for n in names])
        centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
        similarity = embeddings @ centroids.T
        labels = np.argmax(similarity, axis=1)
        best: dict[tuple[int, int], int] = {}
        for i, u in enumerate(units):
            key = (u.chunk, u.local)
            if u.founder and (key not in best or u.frames.sum() > units[best[key]].frames.sum()):
                best[key] = i
        for i, u in enumerate(units):
            if not u.founder and (u.chunk, u.local) in best:
                labels[i] = labels[best[(u.chunk, u.local)]]
        self._apart(units, similarity, labels)
        return labels

    def _apart(self, units: list[Unit], similarity: np.ndarray, labels: np.ndarray) -> None:
        """Where two units of one chunk's different local speakers talk at once and got one speaker,
        the one less like that speaker takes its next most similar speaker; with one speaker
        found, a second (two voices at once are two people, even with no solo speech to found a
        cluster), unless MAX_SPEAKERS is 1."""
        if similarity.shape[1] == 1:
            if self.max_speakers == 1:
                return
            similarity = np.hstack([similarity, np.full((len(similarity), 1), -1.0, similarity.dtype)])
        by_chunk: dict[int, list[int]] = {}
        for i, u in enumerate(units):
            by_chunk.setdefault(u.chunk, []).append(i)
        for members in by_chunk.values():
            for x in members:
                for y in members:
                    ux, uy = units[x], units[y]
                    overlapping = ux.first < uy.end and uy.first < ux.end
                    if x < y and ux.local != uy.local and labels[x] == labels[y] and overlapping:
                        loser = x if similarity[x, labels[x]] < similarity[y, labels[y]] else y
                        labels[loser] = int(np.argsort(-similarity[loser])[1])

    def _cluster(self, embeddings: np.ndarray) -> np.ndarray:
        return cluster_sampled(embeddings, self._linkage_labels)

    def _linkage_labels(self, embeddings: np.ndarray) -> np.ndarray:
        from scipy.cluster.hierarchy import fcluster, linkage

        if len(embeddings) < 2:
            return np.zeros(len(embeddings), dtype=int)
        method = self.parameters.linkage
        tree = linkage(embeddings, method=method, metric="cosine" if method == "average" else "euclidean")
        p = self.parameters
        smallest = min(p.min_cluster_size, max(1, round(p.min_cluster_share * len(embeddings))))
        labels = _without_small_clusters(embeddings, fcluster(tree, t=p.threshold, criterion="distance"), smallest)
        return within_bounds(tree, labels, len(embeddings), self.min_speakers, self.max_speakers)

    def _reconstructed(self, chunks: Chunks, units: list[Unit], labels: np.ndarray, duration: float) -> list[Turn]:
        """Turns from the chunks' soft activations, averaged per global speaker where chunks overlap:
        speech where P(anyone talks) passes ``onset``; there the ``n`` most active speakers, ``n``
        being the expected number of people talking, rounded, 1 or 2."""
        seg, p = self.segmentation, self.parameters
        step = seg.frame_step
        per_chunk = chunks.active.shape[1]
        speakers = int(labels.max()) + 1
        total = int(np.ceil(duration / step)) + 1
        activity = np.zeros((total + per_chunk, speakers), np.float32)
        talking = np.zeros(total + per_chunk, np.float32)
        anyone = np.zeros(total + per_chunk, np.float32)
        weight = np.zeros(total + per_chunk, np.float32)
        firsts = [int(round(start / step)) for start in chunks.starts]
        for c, first in enumerate(firsts):
            rows = slice(first, first + per_chunk)
            talking[rows] += chunks.soft[c].sum(axis=1)
            anyone[rows] += chunks.speech[c]
            weight[rows] += 1
        for u, g in zip(units, labels):
            rows = slice(firsts[u.chunk] + u.first, firsts[u.chunk] + u.end)
            activity[rows, g] += chunks.soft[u.chunk, u.first:u.end, u.local]
        weight = np.maximum(weight, 1)[:total]
        activity = activity[:total] / weight[:, None]
        speech = (anyone[:total] / weight) > p.onset
        count = np.where(speech, np.clip(np.rint(talking[:total] / weight), 1, 2), 0).astype(int)
        ranked = np.argsort(-activity, axis=1)
        binary = np.zeros_like(activity, dtype=bool)
        for n in range(1, min(speakers, 2) + 1):
            rows = np.flatnonzero(count >= n)
            binary[rows, ranked[rows, n - 1]] = activity[rows, ranked[rows, n - 1]] > 0.01
        turns = []
        offset = seg.frame_duration / 2
        for g in range(speakers):
            for a, b in _runs(binary[:, g], p.min_gap_seconds / step):
                start, end = a * step + offset, min(duration, b * step + offset)
                if end - start > p.min_turn_seconds:
                    turns.append(Turn(start, end, str(g)))
        return sorted(turns, key=lambda t: (t.start, t.end))


def diarizer_engine(parameters: DiarizationParameters, min_speakers: int, max_speakers: int) -> Engine:
    """The diarizer as a result records it: the weights (name and sha256 prefix) as ``model``, every
    parameter and the speaker bounds as ``version``, so that results of different settings differ."""
    settings = asdict(parameters) | {"min_speakers": min_speakers, "max_speakers": max_speakers}
    return Engine(ENGINE_NAME, speaker_models.MODEL_ID, " ".join(f"{k}={v}" for k, v in settings.items()), True)


def _without_small_clusters(embeddings: np.ndarray, labels: np.ndarray, min_size: int) -> np.ndarray:
    """Members of clusters smaller than ``min_size`` join the large cluster whose centre is nearest
    (all stay as they are when no cluster is that large)."""
    names, sizes = np.unique(labels, return_counts=True)
    large = names[sizes >= min_size]
    if len(large) == 0 or len(large) == len(names):
        return labels
    centres = np.stack([embeddings[labels == n].mean(axis=0) for n in large])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    small = ~np.isin(labels, large)
    out = labels.copy()
    out[small] = large[np.argmax(embeddings[small] @ centres.T, axis=1)]
    return out


def _frames_audio(audio: np.ndarray, chunk_start: float, frames: np.ndarray, step: float) -> np.ndarray:
    """The samples under the chosen frames of a chunk, joined."""
    pieces = []
    for a, b in _runs(frames, 0):
        s = int((chunk_start + a * step) * SAMPLE_RATE)
        e = int((chunk_start + b * step) * SAMPLE_RATE)
        pieces.append(audio[s:e])
    return np.concatenate(pieces).astype(np.float32) if pieces else np.zeros(0, np.float32)


def _runs(mask: np.ndarray, max_gap_frames: float) -> list[tuple[int, int]]:
    """(first, end) frame index pairs of the True runs; gaps up to ``max_gap_frames`` are filled."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    runs: list[tuple[int, int]] = []
    for a, b in zip(starts, ends):
        if runs and a - runs[-1][1] <= max_gap_frames:
            runs[-1] = (runs[-1][0], int(b))
        else:
            runs.append((int(a), int(b)))
    return runs


def speech_regions(audio: np.ndarray) -> list[Span]:
    """Speech as turns are cut from it: a 0.3 s pause ends a region, padded by 0.1 s."""
    return vad.speech_regions(audio, min_silence_ms=300, pad_ms=100)


def _named(turns: list[Turn]) -> list[Turn]:
    names: dict[str, str] = {}
    for t in turns:
        names.setdefault(t.speaker, f"S{len(names) + 1}")
    return [Turn(round(t.start, 3), round(t.end, 3), names[t.speaker]) for t in turns]
