"""Synthetic CrossTask-format data that exercises every temporal method.

Components (verbs, nouns) are random unit vectors; a step's clips are the sum of its components plus
noise, background is a per-video style vector plus noise and optional distractors (a task noun without
its action, the false positives of text-video scores). Each verb has a latent position in a procedure
(``rank``), so the steps of every task follow one global order, which is what temporal order
verification can discover. The generator writes real CrossTask files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from .data import Interval, Task, VideoEntry, write_intervals, write_narration, write_tasks, write_videos
from .step_windows import NarrationConfig, constraints_from_narration

FILLERS = [
    "so",
    "now",
    "we",
    "just",
    "going",
    "okay",
    "really",
    "nice",
    "then",
    "here",
    "like",
    "you",
    "can",
    "see",
    "that",
    "little",
    "bit",
    "next",
    "right",
    "there",
    "good",
    "this",
    "is",
    "what",
    "all",
]


@dataclass
class SynthConfig:
    """Knobs of the generator; defaults follow the CrossTask statistics of spec Table 3.2."""

    n_primary: int = 6
    """Annotated tasks."""
    n_related: int = 6
    """Unannotated tasks sharing components with the primary ones (training only)."""
    n_unseen: int = 0
    """Tasks built from primary components, with test videos only (zero-shot transfer)."""
    train_videos: int = 30
    """Training videos per primary task (CrossTask protocol: 30)."""
    test_videos: int = 20
    """Test videos per primary (and unseen) task."""
    related_videos: int = 20
    """Videos per related task."""
    n_verbs: int = 20
    """Verbs available to primary tasks (related tasks add half as many of their own)."""
    n_nouns: int = 24
    """Nouns available to primary tasks (related tasks add half as many of their own)."""
    steps_range: tuple[int, int] = (3, 11)
    """K ~ U[lo, hi] steps per task."""
    share_rate: float = 0.7
    """Probability that a related task's component is drawn from the primary tasks' components."""
    dim: int = 64
    """Feature dimension D."""
    length_range: tuple[int, int] = (120, 360)
    """T ~ U[lo, hi] clips (1 clip = 1 s)."""
    p_missing: float = 0.31
    """Probability that a step is absent from a video."""
    p_swap: float = 0.3
    """Probability of swapping each adjacent pair of present steps (order consistency ~0.86)."""
    bg_ratio: float = 0.72
    """Target fraction of background clips (intro/outro included)."""
    duration_sigma: float = 0.5
    """Log-normal sigma of relative step durations."""
    p_intro: float = 0.0
    """Probability that a video has an intro block (and, independently, an outro block)."""
    intro_range: tuple[int, int] = (10, 30)
    """Length of intro/outro blocks in clips."""
    signal: float = 1.0
    """Norm scale of component vectors in action clips."""
    noise: float = 0.5
    """Per-dimension std of clip noise."""
    ar: float = 0.0
    """AR(1) coefficient of the clip noise (temporal smoothness)."""
    motion: float = 0.5
    """Norm of a direction shared by all action clips (hands and motion): what makes actionness
    linearly learnable at all."""
    progress: float = 1.0
    """Norm of a state vector whose sign flips through the procedure in action clips (the dish nearing
    completion): the order cue that temporal order verification picks up."""
    style: float = 1.0
    """Norm of the per-video background style vector."""
    distractors_per_min: float = 0.0
    """Rate of background segments showing a task noun without its action."""
    distractor_range: tuple[int, int] = (3, 10)
    """Length of distractor segments in clips."""
    p_narrated: float = 0.7
    """Probability that a present step is mentioned in the narration."""
    narration_offset: tuple[float, float] = (-3.0, 8.0)
    """Mention time = step start + N(mean, std) seconds."""
    p_synonym: float = 0.3
    """Probability that a mention uses a synonym instead of the step's word."""
    spurious_per_min: float = 1.0
    """Rate of mentions of the task's step words at random times."""
    chatter_per_s: float = 1.0
    """Rate of filler words."""
    narration: NarrationConfig = field(default_factory=NarrationConfig)
    """How constraints are derived from the generated narration."""
    seed: int = 0


@dataclass
class SynthVideo:
    video_id: str
    task_id: str
    split: str
    """``train`` / ``test`` (primary), ``related``, or ``unseen`` (test only)."""
    X: np.ndarray
    intervals: list[Interval]
    narration: list[tuple[str, float]]
    constraints: list[Interval]


@dataclass
class SynthDataset:
    tasks: dict[str, Task]
    kind: dict[str, str]
    """``primary`` / ``related`` / ``unseen`` per task id."""
    videos: list[SynthVideo]

    def by_split(self, split: str, task: str | None = None) -> list[SynthVideo]:
        return [v for v in self.videos if v.split == split and (task is None or v.task_id == task)]

    def steps(self) -> dict[str, list[str]]:
        return {t: task.steps for t, task in self.tasks.items()}

    def write(self, root: Path) -> None:
        """Write the CrossTask layout (see ``data.CrossTask``)."""
        root = Path(root)
        for sub in ("annotations", "crosstask_constraints", "crosstask_features", "narration"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        write_tasks(root / "tasks_primary.txt", [t for i, t in self.tasks.items() if self.kind[i] != "related"])
        write_tasks(root / "tasks_related.txt", [t for i, t in self.tasks.items() if self.kind[i] == "related"])
        entry = {
            v.video_id: VideoEntry(v.task_id, v.video_id, f"https://example.invalid/{v.video_id}") for v in self.videos
        }
        write_videos(root / "videos.csv", [entry[v.video_id] for v in self.videos if v.split in ("train", "related")])
        write_videos(root / "videos_val.csv", [entry[v.video_id] for v in self.videos if v.split in ("test", "unseen")])
        for v in self.videos:
            np.save(root / "crosstask_features" / f"{v.video_id}.npy", v.X)
            write_narration(root / "narration" / f"{v.video_id}.json", v.narration)
            if v.split in ("train", "related"):
                write_intervals(root / "crosstask_constraints" / f"{v.task_id}_{v.video_id}.csv", v.constraints)
            if v.split != "related":
                write_intervals(root / "annotations" / f"{v.task_id}_{v.video_id}.csv", v.intervals)


def _words(rng: np.random.Generator, n: int) -> list[str]:
    """Distinct pronounceable words that the stemmer leaves unchanged (end in a consonant, not 's')."""
    cons, vow, end = list("bdfgklmnprtvz"), list("aeiou"), list("bdfgklmnprtvz")
    out: set[str] = set()
    while len(out) < n:
        syl = rng.integers(2, 4)
        w = "".join(rng.choice(cons) + rng.choice(vow) for _ in range(syl)) + rng.choice(end)
        out.add(w)
    words = sorted(out)  # not set order: that depends on PYTHONHASHSEED
    return [words[i] for i in rng.permutation(len(words))]


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.normal(size=(n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def generate(conf: SynthConfig | None = None) -> SynthDataset:
    """Draw tasks, videos, features, narration and constraints from ``conf``."""
    conf = conf or SynthConfig()
    rng = np.random.default_rng(conf.seed)
    n_v, n_n = conf.n_verbs + conf.n_verbs // 2, conf.n_nouns + conf.n_nouns // 2
    names = _words(rng, 2 * (n_v + n_n))
    verbs, nouns = names[:n_v], names[n_v : n_v + n_n]
    synonym = dict(zip(verbs + nouns, names[n_v + n_n :], strict=True))
    vec = dict(zip(verbs + nouns, _unit(rng, n_v + n_n, conf.dim), strict=True))
    rank = dict(zip(verbs, rng.random(n_v), strict=True))
    intro_vec, outro_vec, state_vec, motion_vec = _unit(rng, 4, conf.dim)

    def make_task(tid: str, verb_pool: list[str], noun_pool: list[str]) -> Task:
        K = int(rng.integers(conf.steps_range[0], conf.steps_range[1] + 1))
        vs = sorted(rng.choice(verb_pool, size=min(K, len(verb_pool)), replace=False), key=rank.__getitem__)
        ns = rng.choice(noun_pool, size=len(vs), replace=False)
        return Task(
            tid, f"Task {tid}", f"https://example.invalid/task/{tid}", [f"{v} {n}" for v, n in zip(vs, ns, strict=True)]
        )

    tasks: dict[str, Task] = {}
    kind: dict[str, str] = {}
    prim_v, prim_n = verbs[: conf.n_verbs], nouns[: conf.n_nouns]
    for i in range(conf.n_primary):
        tid = str(10000 + i)
        tasks[tid], kind[tid] = make_task(tid, prim_v, prim_n), "primary"
    used_v = sorted({s.split()[0] for t in tasks.values() for s in t.steps})
    used_n = sorted({s.split()[1] for t in tasks.values() for s in t.steps})
    own_v, own_n = verbs[conf.n_verbs :], nouns[conf.n_nouns :]
    for i in range(conf.n_related):
        tid = str(20000 + i)
        K = int(rng.integers(conf.steps_range[0], conf.steps_range[1] + 1))
        vpool = [rng.choice(used_v) if rng.random() < conf.share_rate else rng.choice(own_v) for _ in range(3 * K)]
        npool = [rng.choice(used_n) if rng.random() < conf.share_rate else rng.choice(own_n) for _ in range(3 * K)]
        vs = sorted([str(v) for v in dict.fromkeys(vpool)][:K], key=rank.__getitem__)
        ns = [str(n) for n in dict.fromkeys(npool)][: len(vs)]
        tasks[tid] = Task(
            tid, f"Task {tid}", f"https://example.invalid/task/{tid}", [f"{v} {n}" for v, n in zip(vs, ns, strict=True)]
        )
        kind[tid] = "related"
    for i in range(conf.n_unseen):
        tid = str(30000 + i)
        tasks[tid], kind[tid] = make_task(tid, used_v, used_n), "unseen"

    plan = []
    for tid, k in kind.items():
        if k == "primary":
            plan += [(tid, "train")] * conf.train_videos + [(tid, "test")] * conf.test_videos
        elif k == "related":
            plan += [(tid, "related")] * conf.related_videos
        else:
            plan += [(tid, "unseen")] * conf.test_videos
    videos = []
    for n, (tid, split) in enumerate(plan):
        videos.append(
            _video(
                conf,
                rng,
                f"v{n:05d}",
                tasks[tid],
                split,
                vec,
                synonym,
                np.stack([intro_vec, outro_vec, state_vec, motion_vec]),
            )
        )
    return SynthDataset(tasks, kind, videos)


def _video(
    conf: SynthConfig,
    rng: np.random.Generator,
    vid: str,
    task: Task,
    split: str,
    vec: dict[str, np.ndarray],
    synonym: dict[str, str],
    globals_: np.ndarray,
) -> SynthVideo:
    T = int(rng.integers(conf.length_range[0], conf.length_range[1] + 1))
    K = len(task.steps)
    intro = int(rng.integers(*conf.intro_range)) if rng.random() < conf.p_intro else 0
    outro = int(rng.integers(*conf.intro_range)) if rng.random() < conf.p_intro else 0
    present = [k for k in range(K) if rng.random() >= conf.p_missing] or [int(rng.integers(K))]
    for i in range(len(present) - 1):
        if rng.random() < conf.p_swap:
            present[i], present[i + 1] = present[i + 1], present[i]
    core = T - intro - outro
    n = len(present)
    action = int(min(max((1 - conf.bg_ratio) * T, 2 * n), 0.8 * core))
    rel = rng.lognormal(0.0, conf.duration_sigma, n)
    dur = np.maximum(np.floor(rel / rel.sum() * action), 1).astype(int)
    gaps = np.floor(rng.dirichlet(np.ones(n + 1)) * (core - dur.sum())).astype(int)
    gaps[-1] += core - dur.sum() - gaps.sum()
    y = np.zeros(T, dtype=np.int64)
    intervals: list[Interval] = []
    t = intro
    for k, d, g in zip(present, dur, gaps[:-1], strict=True):
        t += g
        y[t : t + d] = k + 1
        intervals.append((k + 1, float(t), float(t + d)))
        t += d
    # features
    noise = rng.normal(size=(T, conf.dim)) * conf.noise
    if conf.ar > 0:
        noise = lfilter([np.sqrt(1 - conf.ar**2)], [1, -conf.ar], noise, axis=0)
    intro_vec, outro_vec, state_vec, motion_vec = globals_
    comp = np.stack([vec[w0] + vec[w1] for w0, w1 in (s.split() for s in task.steps)])
    comp += conf.progress * np.linspace(-1, 1, K)[:, None] * state_vec + conf.motion * motion_vec
    X = noise
    X[y > 0] += conf.signal * comp[y[y > 0] - 1]
    style = rng.normal(size=conf.dim)
    X[y == 0] += conf.style * style / np.linalg.norm(style)
    X[:intro] += conf.signal * intro_vec
    X[T - outro :] += conf.signal * outro_vec
    bg = np.flatnonzero(y[intro : T - outro] == 0) + intro
    for _ in range(rng.poisson(conf.distractors_per_min * T / 60) if len(bg) else 0):
        at = int(rng.choice(bg))
        seg = np.arange(at, min(at + int(rng.integers(*conf.distractor_range)), T))
        seg = seg[y[seg] == 0]
        noun = task.steps[int(rng.integers(K))].split()[1]
        X[seg] += conf.signal * vec[noun]
    # narration: filler chatter, step mentions around their start, spurious mentions
    chatter = np.sort(rng.uniform(0, T, rng.poisson(conf.chatter_per_s * T)))
    words = [(str(rng.choice(FILLERS)), float(tt)) for tt in chatter]
    for k, s, _ in intervals:
        if rng.random() < conf.p_narrated:
            t0 = float(np.clip(s + rng.normal(*conf.narration_offset), 0, T - 3))
            verb, noun = task.steps[k - 1].split()
            verb = synonym[verb] if rng.random() < conf.p_synonym else verb
            noun = synonym[noun] if rng.random() < conf.p_synonym else noun
            verb = verb + "ing" if rng.random() < 0.3 else verb
            utter = ["now", "we", verb, "the", noun]
            words += [(w, t0 + 0.4 * i) for i, w in enumerate(utter)]
    for _ in range(rng.poisson(conf.spurious_per_min * T / 60)):
        w = task.steps[int(rng.integers(K))].split()[int(rng.integers(2))]
        words.append((w, float(rng.uniform(0, T))))
    words.sort(key=lambda wt: wt[1])
    cons = constraints_from_narration(words, task.steps, conf.narration) if split in ("train", "related") else []
    return SynthVideo(vid, task.task_id, split, X.astype(np.float32), intervals, words, cons)
