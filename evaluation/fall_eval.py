"""Replay recordings through the streaming ``FallDetector`` and score it like the issue asks.

Each recording is down-sampled (polyphase, anti-aliased) to the evaluation rate, cut into
1 s frames and pushed into a fresh detector, exactly as the gateway does with live frames;
at the end of the recording ``FallDetector.flush`` decides the suspected falls still waiting
for their confirmation time (SisFall subjects stay on the mat after a fall). A fall
recording counts as detected when at least one ``FallEvent`` is raised; an ADL recording
counts as correct when none is. The delay of a detection is measured from the peak
acceleration of the original recording (SisFall has no onset label).

Replays confirm late (``EVAL_CONFIRM_S``) and keep every candidate impact with its features
and the time its trunk came back (if it did), so that any model, threshold or confirmation
time is decided again without replaying (``decisions_from_model``).

Subject-wise cross-validation (``cross_validate``) fits, on the training subjects only, the
logistic model and the decision threshold (``fit_detector``: the threshold is the sensitivity
margin on real and elderly-like falls), over every condition (50 Hz, 20 Hz on another device)
at once, and decides the held-out subjects with it. The features, windows and the posture
rules' angles were chosen by hand on all of sisfall-dev: see docs/fall-detection.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

from edge.fall_detection import FALL_MODEL, CandidateImpact, FallDetector, FallSettings
from edge.fall_features import FEATURE_NAMES, POST_S, LogisticModel
from evaluation.recordings import Dataset, Recording, RecordingInfo

STREAM_T0_MS = 1_700_000_000_000
"""Epoch ms given to the first sample of every replayed recording."""

FALL_LABEL_WINDOW_S = 2.0
"""For fitting: a candidate within this many seconds of a fall recording's peak is the fall."""

EVAL_CONFIRM_S = 10.0
"""Replays confirm this late (the issue's ceiling) and record when each candidate's trunk came
back; decisions for any shorter confirmation time are then derived without replaying."""

CONFIRM_TABLE_S = (2.5, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0)
"""Confirmation times (s after the impact) of the table in docs/fall-detection.md."""

THRESHOLD_GRID = tuple(float(t) for t in np.arange(-1.5, 1.51, 0.25))
"""Logit thresholds ``choose_threshold`` may pick from."""

SPECIFICITY_FLOOR = 0.997
"""Training-subject specificity the threshold must keep (target 99.5 % plus a margin)."""

SENSITIVITY_TABLE = (0.0, 0.25, 0.5, 0.75, 1.0)
"""``FallSettings.sensitivity`` levels (per elder, from the care plan) reported by the CV."""

LIE_DOWN_ACTIVITIES = ("D12", "D13")
"""SisFall: sitting, lying down (slowly, quickly) — replayed as if the subject stayed lying."""


@dataclass(frozen=True)
class ReplayResult:
    """What the detector did on one recording."""

    info: RecordingInfo
    duration_s: float
    peak_t_s: float  # time of the peak acceleration from the recording start (s)
    alarms_t_s: tuple[float, ...]  # decision times of the FallEvents (s)
    candidates: tuple[CandidateImpact, ...] = field(repr=False)

    def candidate_t_s(self, c: CandidateImpact) -> tuple[float, float]:
        """(impact, decision) times of a candidate from the recording start (s)."""
        return (c.impact_ts_ms - STREAM_T0_MS) / 1000.0, (c.decided_ts_ms - STREAM_T0_MS) / 1000.0


def downsample(x: np.ndarray, src_hz: float, hz: float) -> np.ndarray:
    """Resample rows of ``x`` from ``src_hz`` to ``hz`` with an anti-aliasing polyphase filter."""
    if abs(src_hz - hz) < 1e-9 or len(x) < 2:
        return np.asarray(x, dtype=float)
    ratio = Fraction(hz / src_hz).limit_denominator(1000)
    return np.asarray(resample_poly(x, ratio.numerator, ratio.denominator, axis=0, padtype="line"))


def replay(
    rec: Recording,
    hz: float = 50.0,
    *,
    acc_only: bool = False,
    settings: FallSettings | None = None,
    model: LogisticModel = FALL_MODEL,
    frame_s: float = 1.0,
) -> ReplayResult:
    """Push one recording through a fresh detector in frames of ``frame_s`` seconds at ``hz``."""
    acc = downsample(rec.acc, rec.hz, hz)
    gyr = None if acc_only or rec.gyr is None else downsample(rec.gyr, rec.hz, hz)
    candidates: list[CandidateImpact] = []
    detector = FallDetector(settings, model=model, on_candidate=candidates.append)
    alarms: list[float] = []
    n = max(1, int(round(frame_s * hz)))
    for i in range(0, len(acc), n):
        t0 = STREAM_T0_MS + int(round(i * 1000.0 / hz))
        frame_gyr = None if gyr is None else gyr[i : i + n]
        for event in detector.push(t0, hz, acc[i : i + n], frame_gyr):
            alarms.append((event.decided_ts_ms - STREAM_T0_MS) / 1000.0)
    for event in detector.flush():  # the recording ends: the subject is still down
        alarms.append((event.decided_ts_ms - STREAM_T0_MS) / 1000.0)
    svm = np.linalg.norm(rec.acc, axis=1) if len(rec.acc) else np.zeros(1)
    return ReplayResult(
        info=rec.info,
        duration_s=len(rec.acc) / rec.hz,
        peak_t_s=float(np.argmax(svm)) / rec.hz,
        alarms_t_s=tuple(alarms),
        candidates=tuple(candidates),
    )


def replay_dataset(
    dataset: Dataset,
    hz: float = 50.0,
    *,
    acc_only: bool = False,
    settings: FallSettings | None = None,
    model: LogisticModel = FALL_MODEL,
    progress: Callable[[int, int], None] | None = None,
) -> list[ReplayResult]:
    """Replay every recording of ``dataset``; ``progress(done, total)`` after each one."""
    out = []
    total = len(dataset.recordings)
    for i, info in enumerate(dataset.recordings):
        out.append(
            replay(dataset.load(info), hz, acc_only=acc_only, settings=settings, model=model)
        )
        if progress is not None:
            progress(i + 1, total)
    return out


def replay_conditions(
    dataset: Dataset,
    rates: Sequence[tuple[str, float, bool]],
    *,
    settings: FallSettings | None = None,
    elderly_per_fall: int = 1,
    seed: int = 13,
    progress: Callable[[int, int], None] | None = None,
) -> list[Condition]:
    """Replay ``dataset`` once per ``(name, hz, other_device)``, confirming at
    ``EVAL_CONFIRM_S``; ``other_device`` passes every recording through ``perturbed`` first
    (orientation, gain, offset, noise). Each fall is also replayed ``elderly_per_fall``
    times made slower and softer (``elderly_like``, parameters drawn per copy)."""
    from evaluation.fall_augment import draw_elderly_params, elderly_like, perturbed

    settings = replace(settings or FallSettings(), confirm_s=EVAL_CONFIRM_S)
    n_falls = sum(1 for info in dataset.recordings if info.is_fall)
    total = len(rates) * (len(dataset.recordings) + elderly_per_fall * n_falls)
    done = 0
    out = []
    for name, hz, other_device in rates:
        rng = np.random.default_rng(seed)  # the same copies at every rate
        real: list[ReplayResult] = []
        elderly: list[ReplayResult] = []
        for info in dataset.recordings:
            rec = dataset.load(info)
            copies = elderly_per_fall if info.is_fall else 0
            variants = [elderly_like(rec, draw_elderly_params(rng)) for _ in range(copies)]
            if other_device:
                rec = perturbed(rec, rng)
                variants = [perturbed(v, rng) for v in variants]
            real.append(replay(rec, hz, settings=settings))
            elderly.extend(replay(v, hz, settings=settings) for v in variants)
            done += 1 + len(variants)
            if progress is not None:
                progress(done, total)
        out.append(Condition(name, real, elderly))
    return out


# ---------------------------------------------------------------------------------- scoring


@dataclass(frozen=True)
class Decision:
    """Per-recording outcome: alarm decision times (s from start) and the reference peak."""

    info: RecordingInfo
    duration_s: float
    peak_t_s: float
    alarms_t_s: tuple[float, ...]


def decisions_from_events(results: Iterable[ReplayResult]) -> list[Decision]:
    """Outcomes as the streaming detector raised them."""
    return [Decision(r.info, r.duration_s, r.peak_t_s, r.alarms_t_s) for r in results]


def decisions_from_model(
    results: Iterable[ReplayResult],
    model: LogisticModel,
    settings: FallSettings,
    *,
    ignore_return: bool = False,
) -> list[Decision]:
    """Outcomes had the detector used ``model`` and ``settings``, from the recorded candidates.

    The replay must have confirmed at least as late as ``settings.confirm_s`` (it records
    when each candidate's trunk came back, ``return_s``), so one replay answers for every
    shorter confirmation time. ``ignore_return``: as if nobody came back up (rule B off) —
    used to ask what lying down and *staying* down would do.
    """
    confirm = max(settings.confirm_s, POST_S)
    out = []
    for r in results:
        alarms: list[float] = []
        quiet_until = -np.inf
        for c in sorted(r.candidates, key=lambda c: c.impact_ts_ms):
            t_impact, t_decided = r.candidate_t_s(c)
            score = float(model.score(c.features.vector()))
            strong = settings.is_strong(score)  # the posture-reversal rules are waived
            if t_impact < quiet_until or (c.held_before and not strong):
                continue
            returned = c.return_s is not None and c.return_s <= confirm
            if returned and not ignore_return and not strong:
                continue
            if settings.is_fall(c.features, score):
                late = c.return_s is not None or t_decided > t_impact + confirm
                alarms.append(t_impact + confirm if late else t_decided)
                quiet_until = t_impact + settings.refractory_s
        out.append(Decision(r.info, r.duration_s, r.peak_t_s, tuple(alarms)))
    return out


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def _quantile(values: Sequence[float], q: float) -> float | None:
    return float(np.quantile(values, q)) if len(values) else None


def summarize(decisions: Sequence[Decision]) -> dict[str, object]:
    """Sensitivity, specificity, false alarms per hour, delays and a per-activity breakdown."""
    falls = [d for d in decisions if d.info.is_fall]
    adls = [d for d in decisions if not d.info.is_fall]
    detected = [d for d in falls if d.alarms_t_s]
    adl_alarms = sum(len(d.alarms_t_s) for d in adls)
    adl_hours = sum(d.duration_s for d in adls) / 3600.0
    delays = [d.alarms_t_s[0] - d.peak_t_s for d in detected]
    per_activity: dict[str, dict[str, object]] = {}
    for activity in sorted({d.info.activity for d in decisions}):
        group = [d for d in decisions if d.info.activity == activity]
        alarmed = sum(1 for d in group if d.alarms_t_s)
        is_fall = group[0].info.is_fall
        per_activity[activity] = {
            "is_fall": is_fall,
            "recordings": len(group),
            "alarmed": alarmed,
            "errors": len(group) - alarmed if is_fall else alarmed,
        }
    return {
        "recordings": len(decisions),
        "falls": len(falls),
        "adls": len(adls),
        "detected": len(detected),
        "adl_alarmed": sum(1 for d in adls if d.alarms_t_s),
        "sensitivity": _ratio(len(detected), len(falls)),
        "specificity": _ratio(len(adls) - sum(1 for d in adls if d.alarms_t_s), len(adls)),
        "false_alarms_per_hour": adl_alarms / adl_hours if adl_hours > 0 else None,
        "adl_hours": adl_hours,
        "delay_s_median": _quantile(delays, 0.5),
        "delay_s_p95": _quantile(delays, 0.95),
        "delay_s_max": max(delays) if delays else None,
        "per_activity": per_activity,
    }


# ------------------------------------------------------------------------ fitting and CV


def training_set(
    results: Iterable[ReplayResult], max_post_std_g: float = FallSettings.max_post_std_g
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate features X, labels y (1 = fall impact) and recording weights w.

    Candidates the activity veto (``max_post_std_g``) or the look-back rule (A) reject anyway
    are left out. Candidates that the return rule (B) cancelled are *kept* as negatives: lying
    down onto a bed and staying there must not look like a fall to the model itself, since
    in a bed nobody sits up again within seconds. In a fall
    recording the positive is the strongest candidate within ``FALL_LABEL_WINDOW_S`` of the
    peak acceleration (the impact); its other candidates (the walk before, rebounds after)
    are left out as ambiguous. Every recording weighs 1 in total, so long walks do not drown
    short falls.
    """
    xs, ys, ws = [], [], []
    for r in results:
        kept = [
            c for c in r.candidates if c.features.post_std_g <= max_post_std_g and not c.held_before
        ]
        if r.info.is_fall:
            near = [
                c for c in kept if abs(r.candidate_t_s(c)[0] - r.peak_t_s) <= FALL_LABEL_WINDOW_S
            ]
            rows = [max(near, key=lambda c: c.features.peak_g).features.vector()] if near else []
        else:
            rows = [c.features.vector() for c in kept]
        for row in rows:
            xs.append(row)
            ys.append(1.0 if r.info.is_fall else 0.0)
            ws.append(1.0 / len(rows))
    if not xs:
        return np.zeros((0, len(FEATURE_NAMES))), np.zeros(0), np.zeros(0)
    return np.array(xs), np.array(ys), np.array(ws)


def fit_logistic(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float = 1e-2, iterations: int = 50
) -> LogisticModel:
    """Weighted, L2-regularised logistic regression by Newton's method on standardised inputs."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale < 1e-9] = 1.0
    z = np.column_stack(((x - mean) / scale, np.ones(len(x))))
    pos = w * y
    neg = w * (1 - y)
    w = pos / max(pos.sum(), 1e-12) + neg / max(neg.sum(), 1e-12)  # balanced classes
    beta = np.zeros(z.shape[1])
    reg = np.full(z.shape[1], l2)
    reg[-1] = 0.0
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ beta, -30, 30)))
        grad = z.T @ (w * (p - y)) + reg * beta
        hess = (z * (w * p * (1 - p))[:, None]).T @ z + np.diag(reg) + 1e-9 * np.eye(len(beta))
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-8:
            break
    return LogisticModel(
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        weight=tuple(float(v) for v in beta[:-1]),
        bias=float(beta[-1]),
    )


def fit_model(results: Iterable[ReplayResult]) -> LogisticModel:
    """The logistic model refitted on ``results`` (real and augmented falls alike)."""
    x, y, w = training_set(results)
    return fit_logistic(x, y, w)


def with_threshold(model: LogisticModel, threshold: float) -> LogisticModel:
    """``model`` shifted so that its score 0 is the logit ``threshold`` of the original."""
    return replace(model, bias=model.bias - threshold)


def _sensitivity(decisions: Sequence[Decision]) -> float:
    falls = [d for d in decisions if d.info.is_fall]
    return sum(1 for d in falls if d.alarms_t_s) / len(falls) if falls else 1.0


def _specificity(decisions: Sequence[Decision]) -> float:
    adls = [d for d in decisions if not d.info.is_fall]
    return sum(1 for d in adls if not d.alarms_t_s) / len(adls) if adls else 1.0


def choose_threshold(
    model: LogisticModel, real: Sequence[ReplayResult], settings: FallSettings
) -> float:
    """The sensitivity margin: the *lowest* (most sensitive) logit threshold of
    ``THRESHOLD_GRID`` at which the training subjects' ADLs keep ``SPECIFICITY_FLOOR``
    (the 99.5 % target plus a margin for being measured on the subjects fitted on). Every
    bit of specificity above the target is spent on sensitivity, which the elderly need
    (their falls are softer than any in the development data)."""
    for threshold in sorted(THRESHOLD_GRID):
        shifted = with_threshold(model, threshold)
        if _specificity(decisions_from_model(real, shifted, settings)) >= SPECIFICITY_FLOOR:
            return threshold
    return max(THRESHOLD_GRID)


def fit_detector(
    real: Sequence[ReplayResult],
    elderly: Sequence[ReplayResult] = (),
    settings: FallSettings | None = None,
) -> tuple[LogisticModel, float]:
    """Everything the data decides, from these subjects only: the coefficients (real and
    elderly-like falls against every ADL candidate) and the threshold (``choose_threshold``),
    folded into the returned model's bias. Used for ``FALL_MODEL`` and inside every CV fold."""
    settings = settings or FallSettings()
    model = fit_model([*real, *elderly])
    threshold = choose_threshold(model, real, settings)
    return with_threshold(model, threshold), threshold


def subject_folds(subjects: Iterable[str], k: int = 7) -> list[list[str]]:
    """Deterministic leave-subjects-out folds: subjects sorted, dealt round-robin into k folds."""
    ordered = sorted(set(subjects))
    folds = [ordered[i::k] for i in range(min(k, len(ordered)))]
    return [f for f in folds if f]


@dataclass(frozen=True)
class Condition:
    """One way of replaying the dataset (a rate, a device) and its replays."""

    name: str
    real: Sequence[ReplayResult]
    elderly: Sequence[ReplayResult] = ()


def _lie_downs(results: Iterable[ReplayResult]) -> list[ReplayResult]:
    return [r for r in results if r.info.activity in LIE_DOWN_ACTIVITIES]


def cross_validate(
    conditions: Sequence[Condition], settings: FallSettings | None = None, k: int = 7
) -> dict[str, object]:
    """Leave-subjects-out CV over all conditions at once (one detector for every rate).

    Each fold fits the model *and* chooses the threshold (``fit_detector``) on the other
    subjects' recordings of every condition, with their elderly-like falls, then decides
    the held-out subjects' recordings. Reported per condition: the pooled figures, the
    held-out elderly-like falls' sensitivity, lying down and staying down (``D12``/``D13``
    with the return rule off), and the confirmation-time table. A fold whose training
    subjects lack falls or ADLs cannot be fitted and is skipped (listed with "skipped").
    """
    settings = settings or FallSettings()
    subjects = {r.info.subject for c in conditions for r in c.real}
    folds = subject_folds(subjects, k)
    held_real: dict[str, list[ReplayResult]] = {c.name: [] for c in conditions}
    pooled: dict[str, dict[str, list[Decision]]] = {c.name: {} for c in conditions}
    per_fold: list[dict[str, object]] = []

    def add(name: str, key: str, decisions: list[Decision]) -> None:
        pooled[name].setdefault(key, []).extend(decisions)

    for held_out in folds:
        held = set(held_out)
        real = [r for c in conditions for r in c.real if r.info.subject not in held]
        elderly = [r for c in conditions for r in c.elderly if r.info.subject not in held]
        _, y, _ = training_set(real, settings.max_post_std_g)
        if not (y == 1).any() or not (y == 0).any():
            per_fold.append({"subjects": held_out, "skipped": "no falls or no ADLs to fit on"})
            continue
        model, threshold = fit_detector(real, elderly, settings)
        fold: dict[str, object] = {"subjects": held_out, "threshold": threshold}
        for c in conditions:
            test = [r for r in c.real if r.info.subject in held]
            test_elderly = [r for r in c.elderly if r.info.subject in held]
            held_real[c.name].extend(test)
            decisions = decisions_from_model(test, model, settings)
            add(c.name, "real", decisions)
            add(c.name, "elderly", decisions_from_model(test_elderly, model, settings))
            add(
                c.name,
                "lie_down",
                decisions_from_model(_lie_downs(test), model, settings, ignore_return=True),
            )
            for confirm in CONFIRM_TABLE_S:
                at = replace(settings, confirm_s=confirm)
                add(c.name, f"real@{confirm}", decisions_from_model(test, model, at))
                add(c.name, f"elderly@{confirm}", decisions_from_model(test_elderly, model, at))
            for level in SENSITIVITY_TABLE:
                at = replace(settings, sensitivity=level)
                add(c.name, f"real~{level}", decisions_from_model(test, model, at))
                add(c.name, f"elderly~{level}", decisions_from_model(test_elderly, model, at))
                lying = decisions_from_model(_lie_downs(test), model, at, ignore_return=True)
                add(c.name, f"lie_down~{level}", lying)
            s = summarize(decisions)
            fold[c.name] = {"sensitivity": s["sensitivity"], "specificity": s["specificity"]}
        per_fold.append(fold)
    report: dict[str, object] = {
        "folds": sum(1 for f in per_fold if "skipped" not in f),
        "per_fold": per_fold,
    }
    for c in conditions:
        got = pooled[c.name]
        real_summary = summarize(got.get("real", []))
        elderly_summary = summarize(got.get("elderly", []))
        lie_down = summarize(got.get("lie_down", []))
        report[c.name] = {
            "pooled": real_summary,
            "elderly_like_sensitivity": elderly_summary["sensitivity"],
            "elderly_like_falls": elderly_summary["falls"],
            "lie_down_and_stay_specificity": lie_down["specificity"],
            "lie_down_recordings": lie_down["adls"],
            "confirm_table": [
                _confirm_row(
                    confirm, got.get(f"real@{confirm}", []), got.get(f"elderly@{confirm}", [])
                )
                for confirm in CONFIRM_TABLE_S
            ],
            "sensitivity_table": [
                {
                    "sensitivity_setting": level,
                    **_confirm_row(
                        settings.confirm_s,
                        got.get(f"real~{level}", []),
                        got.get(f"elderly~{level}", []),
                    ),
                    "lie_down_and_stay_specificity": summarize(got.get(f"lie_down~{level}", []))[
                        "specificity"
                    ],
                }
                for level in SENSITIVITY_TABLE
            ],
        }
    return report


def _confirm_row(
    confirm: float, real: Sequence[Decision], elderly: Sequence[Decision]
) -> dict[str, object]:
    s = summarize(real)
    return {
        "confirm_s": confirm,
        "sensitivity": s["sensitivity"],
        "specificity": s["specificity"],
        "false_alarms_per_hour": s["false_alarms_per_hour"],
        "elderly_like_sensitivity": summarize(elderly)["sensitivity"],
        "delay_s_median": s["delay_s_median"],
    }


def per_subject(decisions: Sequence[Decision]) -> dict[str, dict[str, object]]:
    """Sensitivity and specificity of the shipped model for each subject."""
    out = {}
    for subject in sorted({d.info.subject for d in decisions}):
        s = summarize([d for d in decisions if d.info.subject == subject])
        out[subject] = {k: s[k] for k in ("falls", "adls", "sensitivity", "specificity")}
    return out
