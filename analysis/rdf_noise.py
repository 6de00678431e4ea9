"""The RDF MAE's own noise, measured on the reference, and the test that decides whether a run's RDF differs
from the reference's by more than that noise.

**Noise model.** An RDF estimated from a stretch of MD of length ℓ scatters about its long-run limit, bin by
bin, with a variance that falls as 1/ℓ (for ℓ well beyond the frames' correlation time). The MAE between
two independent estimates of lengths ℓ and R of the same physics is then c·√(1/ℓ + 1/R), with a noise
constant c (MAE·√ps) that depends on the material, the temperature and the RDF settings, not on the lengths.

**Samples of c** come from the reference alone, as independent comparisons: every reference run is cut
into ``BLOCKS_PER_RUN`` consecutive blocks, and each block with the one half a run later (1 with 3, 2 with
4) gives one sample, so that a slow drift within a run shows as noise; with two runs or more, each pair of
runs (1 with 2, 3 with 4, ...) gives one more. These are disjoint, orthogonal contrasts of the data, so the
samples are independent (the blocks must be longer than the frames' correlation time). Each gives
c_i = MAE_i / √(1/ℓ_i + 1/R_i) for its two lengths. One reference run gives only two samples, so its
resolution is wide and itself uncertain; two runs give five.

**The test.** A run of length L compared with reference data of length R is consistent with the reference
when its MAE is at most the threshold √(1/L + 1/R) · exp(m + t · s · √(1 + 1/n)): the one-sided bound that
a new sample of c stays below with probability 1 − α, from the mean m and standard deviation s of the n
samples' ln c (an MAE, a sum of absolute values, is skewed to the right; its logarithm is close to normal),
with t Student's quantile at 1 − α for n − 1 degrees of freedom (which pays for a noise measured from few
samples). α is the false-alarm rate, ``FALSE_ALARM_RATE`` (5 %); measured on runs of a harmonic crystal
(tests/analysis/test_rdf_noise.py) it comes out at 3–5 %. The **floor** √(1/L + 1/R) · c̄, with c̄ the
samples' mean, is the MAE that the reference's own physics gives at these lengths; the **resolution**,
threshold − floor, is the smallest excess of a run's MAE over the floor that the test detects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import t as student_t

from analysis.rdf import RDF, mean_rdf, rdf_mae

FALSE_ALARM_RATE = 0.05  # of the test, per run: a run of the reference's own physics is called different this often
BLOCKS_PER_RUN = 4  # consecutive blocks each reference run is cut into for the noise samples (even)


@dataclass(frozen=True)
class RDFNoise:
    """The noise constants c_i (MAE·√ps) measured on a reference; the floor, threshold and resolution of the
    test at given lengths follow (module docstring)."""

    constants: np.ndarray  # [n_samples]

    @staticmethod
    def _scale(length_ps: float, against_ps: float) -> float:
        return float(np.sqrt(1.0 / length_ps + 1.0 / against_ps))

    def floor(self, length_ps: float, against_ps: float) -> float:
        """The MAE expected between the reference's own physics over ``length_ps`` and ``against_ps``."""
        return self._scale(length_ps, against_ps) * float(np.mean(self.constants))

    def threshold(self, length_ps: float, against_ps: float, false_alarm_rate: float = FALSE_ALARM_RATE) -> float:
        """The largest MAE consistent with the reference at these lengths, at this false-alarm rate."""
        n, logs = len(self.constants), np.log(self.constants)
        spread = student_t.ppf(1.0 - false_alarm_rate, n - 1) * np.std(logs, ddof=1) * np.sqrt(1 + 1 / n)
        return self._scale(length_ps, against_ps) * float(np.exp(np.mean(logs) + spread))

    def resolution(self, length_ps: float, against_ps: float, false_alarm_rate: float = FALSE_ALARM_RATE) -> float:
        """The smallest excess of an MAE over the floor that the test detects at these lengths."""
        return self.threshold(length_ps, against_ps, false_alarm_rate) - self.floor(length_ps, against_ps)


def rdf_noise(blocks: Sequence[Sequence[RDF]], block_ps: Sequence[Sequence[float]]) -> RDFNoise | None:
    """The noise of the reference whose run r has the block RDFs ``blocks[r]`` (``BLOCKS_PER_RUN`` of them) of
    lengths ``block_ps[r]`` (ps), from the samples of the module docstring. None when they cannot give a
    spread (fewer than two, all equal, or one zero)."""
    half = BLOCKS_PER_RUN // 2
    pairs = [(curves[i], curves[i + half], lengths[i], lengths[i + half])
             for curves, lengths in zip(blocks, block_ps, strict=True) for i in range(half)]
    runs = [(mean_rdf(curves, lengths), float(sum(lengths)))
            for curves, lengths in zip(blocks, block_ps, strict=True)]
    pairs += [(*runs[i][:1], *runs[i + 1][:1], runs[i][1], runs[i + 1][1]) for i in range(0, len(runs) - 1, 2)]
    constants = np.array([rdf_mae(a, b) / RDFNoise._scale(a_ps, b_ps) for a, b, a_ps, b_ps in pairs])
    if len(constants) < 2 or not np.all(constants > 0) or not np.std(constants) > 0:
        return None
    return RDFNoise(constants)
