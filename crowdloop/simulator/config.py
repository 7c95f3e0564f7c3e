"""Settings of the simulated marketplace: who is in the crowd, how fast the clock runs,
and which faults the service injects."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CrowdConfig(_Settings):
    """How many workers of each archetype, how fast they are and how well they answer."""

    honest: int = Field(default=30, ge=0)
    noisy: int = Field(default=8, ge=0)
    spammer: int = Field(default=6, ge=0)
    left_bias: int = Field(default=4, ge=0)
    # Behaviours beyond the four classic archetypes (none by default; bench/bench_quality.py
    # mixes them in): careful for their first `sleeper_careful_answers` answers, random
    # after; always "tie"; always the same side ("left"); a colluding group that gives one
    # shared, content-blind answer per task; random clickers who take `volume_weight` times
    # as much work as anyone else.
    sleeper: int = Field(default=0, ge=0)
    always_tie: int = Field(default=0, ge=0)
    same_side: int = Field(default=0, ge=0)
    colluder: int = Field(default=0, ge=0)
    volume_spammer: int = Field(default=0, ge=0)
    # Writers and verifiers bad at one job (crowd.BAD_WRITERS, crowd.BAD_VERIFIERS): lazy
    # writers; copy-pasters (one text everywhere); copiers (others' texts, sometimes with
    # cosmetic edits); off-topic writers; rubber-stampers (accept all); harsh verifiers
    # (reject `harsh_reject_rate` of everything); random verifiers.
    lazy: int = Field(default=0, ge=0)
    copy_paste: int = Field(default=0, ge=0)
    copier: int = Field(default=0, ge=0)
    off_topic: int = Field(default=0, ge=0)
    rubber_stamp: int = Field(default=0, ge=0)
    harsh: int = Field(default=0, ge=0)
    random_verifier: int = Field(default=0, ge=0)
    harsh_reject_rate: float = Field(default=0.8, ge=0, le=1)
    sleeper_careful_answers: int = Field(default=12, ge=0)
    volume_weight: float = Field(default=8.0, ge=1)
    # Hard items: this share of compared pairs (by a hash of the pair) is near 50/50 for
    # careful workers too (`hard_accuracy` for the better side). Clear-cut pairs (quality
    # gap >= 0.8, what golden pairs are made of) are spared unless `hard_clear_cut`, which
    # models an ambiguous golden set.
    hard_share: float = Field(default=0.0, ge=0, le=1)
    hard_accuracy: float = Field(default=0.55, ge=0, le=1)
    hard_clear_cut: bool = False

    fast_fraction: float = Field(default=0.7, ge=0, le=1)
    # Answer delay ranges in simulated seconds, drawn uniformly per (worker, task).
    fast_delay_s: tuple[float, float] = (30.0, 300.0)
    slow_delay_s: tuple[float, float] = (300.0, 1800.0)

    honest_compare_accuracy: float = Field(default=0.92, ge=0, le=1)
    honest_verify_accuracy: float = Field(default=0.93, ge=0, le=1)
    noisy_compare_accuracy: float = Field(default=0.72, ge=0, le=1)
    noisy_verify_accuracy: float = Field(default=0.75, ge=0, le=1)
    noisy_good_text: float = Field(default=0.8, ge=0, le=1)
    left_bias_rate: float = Field(default=0.6, ge=0, le=1)
    # When both sides are equally good, how often a careful worker says "tie".
    tie_when_equal: float = Field(default=0.8, ge=0, le=1)
    # k-wise rankings (crowd._rank): a careful worker orders the responses by their quality
    # plus Gaussian noise of this spread (qualities step by 0.2: at 0.15 a pair 0.2 apart
    # is swapped 17% of the time, at 0.35 36%); where ties are allowed, neighbours whose
    # perceived qualities are within `rank_tie_gap` share a place.
    honest_rank_noise: float = Field(default=0.15, ge=0)
    noisy_rank_noise: float = Field(default=0.35, ge=0)
    rank_tie_gap: float = Field(default=0.05, ge=0)
    # Graded comparisons (crowd.graded_answer): a careful worker perceives the quality gap
    # with this much normal noise (in quality units; one level is 0.2) ...
    graded_noise: float = Field(default=0.1, ge=0)
    noisy_graded_noise: float = Field(default=0.25, ge=0)
    # ... times a personal scale factor exp(N(0, graded_scale_spread)): some workers call
    # everything "significantly better", others rarely leave "slightly".
    graded_scale_spread: float = Field(default=0.35, ge=0)
    # Multi-aspect ratings (simulator/rating.py), in points of the aspect's scale: a careful
    # worker perceives each aspect's hidden score with this much normal noise, then applies
    # their own bias (a shift, N(0, rating_bias_spread) per worker plus half that per
    # aspect) and scale use (a stretch about the scale's middle, exp(N(0,
    # rating_scale_spread)) per worker), and rounds to the scale.
    rating_noise: float = Field(default=0.45, ge=0)
    noisy_rating_noise: float = Field(default=0.9, ge=0)
    rating_bias_spread: float = Field(default=0.6, ge=0)
    rating_scale_spread: float = Field(default=0.35, ge=0)
    # How often a careful worker writes a rationale when a task offers one.
    rationale_rate: float = Field(default=0.3, ge=0, le=1)

    @model_validator(mode="after")
    def _check(self) -> CrowdConfig:
        if self.size == 0:
            raise ValueError("the crowd needs at least one worker")
        for name in ("fast_delay_s", "slow_delay_s"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high")
        return self

    @property
    def size(self) -> int:
        return (
            self.honest
            + self.noisy
            + self.spammer
            + self.left_bias
            + self.sleeper
            + self.always_tie
            + self.same_side
            + self.colluder
            + self.volume_spammer
            + self.lazy
            + self.copy_paste
            + self.copier
            + self.off_topic
            + self.rubber_stamp
            + self.harsh
            + self.random_verifier
        )


class FaultConfig(_Settings):
    """Per-request fault probabilities for /api/v1 (all 0: a well-behaved service)."""

    seed: int = 7
    rate_limit: float = Field(default=0.0, ge=0, le=1)
    retry_after_s: float = Field(default=0.05, ge=0)
    server_error: float = Field(default=0.0, ge=0, le=1)
    timeout: float = Field(default=0.0, ge=0, le=1)
    timeout_sleep_s: float = Field(default=1.0, ge=0)
    # Perform a POST's effect, then answer 500 anyway.
    false_500: float = Field(default=0.0, ge=0, le=1)
    # Fraction of assignments served with a malformed answer (sticky per assignment).
    garble: float = Field(default=0.0, ge=0, le=1)

    @property
    def any_request_fault(self) -> bool:
        return any((self.rate_limit, self.server_error, self.timeout, self.false_500))


class AIJudgeConfig(_Settings):
    """The simulated AI judge behind /openai/v1 (the model: crowdloop/simulator/ai_judge.py)."""

    model: str = "sim-judge-1"
    accuracy: float = Field(default=0.8, ge=0, le=1)
    position_bias: float = Field(default=0.1, ge=0, le=1)
    wrong_tie: float = Field(default=0.15, ge=0, le=1)
    confidence_right: float = 2.0
    confidence_wrong: float = 0.5
    confidence_sd: float = Field(default=1.0, gt=0)
    # Ratings (ai_judge.judge_rating): the judge's shift on every aspect (LLM judges tend to
    # be lenient), the sd of its systematic error per response and aspect when it understood
    # the response (probability `accuracy`) and when it did not, and the sd of what changes
    # between two asks (the aspects listed in another order). In scale points.
    rating_bias: float = 0.3
    rating_noise: float = Field(default=0.4, ge=0)
    rating_noise_confused: float = Field(default=1.2, ge=0)
    rating_order_noise: float = Field(default=0.3, ge=0)
    # Graded comparisons (ai_judge.judge_level): per order, the probability that the judge
    # names the level the gap it sees is worth; otherwise one level off.
    level_accuracy: float = Field(default=0.7, ge=0, le=1)


class SimulatorConfig(_Settings):
    seed: int = 0
    # Simulated seconds per real second; large values make every answer available at once.
    # 0 freezes the clock so tests can move it with `advance`.
    time_scale: float = Field(default=3600.0, ge=0)
    crowd: CrowdConfig = Field(default_factory=CrowdConfig)
    faults: FaultConfig = Field(default_factory=FaultConfig)
    ai_judge: AIJudgeConfig = Field(default_factory=AIJudgeConfig)
    page_limit_default: int = Field(default=500, ge=1)
    page_limit_max: int = Field(default=1000, ge=1)
    # Prefix of every pool, task and assignment id. Several simulators that write into one
    # campaign database (the demo's rounds, each with a fresh simulator) need distinct ids:
    # results are stored under a unique (connector, external id).
    id_prefix: str = Field(default="", pattern=r"^[A-Za-z0-9_.-]*$", max_length=40)
