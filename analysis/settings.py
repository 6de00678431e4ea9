"""The analysis settings: one type for the spec's ``analysis:`` section, the analyze stage's stored inputs and
``campaign analyze``'s options, so the three can never disagree on a default or a bound.

The defaults are the constants the analysis itself uses (``analysis.rdf``, ``analysis.stability``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator

from analysis.rdf import CHEMICAL_SYMBOLS, DEFAULT_N_BINS, DEFAULT_R_MAX_A, MAX_N_BINS, MAX_R_MAX_A, MIN_N_BINS
from analysis.stability import FUSION_DISTANCE_A, RDF_MAE_STABLE
from records.settings import PositiveFloat, Strict

DEFAULT_COLLAPSE_WINDOW_PS = 1.0  # MDsim's (Fu et al., "Forces are not enough", TMLR 2023)
DEFAULT_KERNEL_WIDTH_A = 0.0  # 0: the plain histogram
DEFAULT_DIFFUSING_SPECIE = "Li"
DEFAULT_TARGET_TEMPERATURE_K = 300.0
MAX_TEMPERATURE_K = 5000.0

Temperature_K = Annotated[float, Field(gt=0, le=MAX_TEMPERATURE_K)]


class RDFSettings(Strict):
    """How RDFs are computed: range, bins, the partials wanted (those whose elements are present), frame stride
    and the Gaussian kernel that smooths the histogram."""

    r_max_A: PositiveFloat = Field(DEFAULT_R_MAX_A, le=MAX_R_MAX_A, description="Largest pair distance of the RDF in Å.")
    n_bins: int = Field(DEFAULT_N_BINS, ge=MIN_N_BINS, le=MAX_N_BINS, description="Number of RDF bins.")
    pairs: list[tuple[str, str]] = Field(
        default_factory=list, description="Partial RDFs to compute as [element, element] pairs; the total is always."
    )
    frame_stride: int = Field(1, ge=1, description="Use every n-th frame for the RDF.")
    kernel_width_A: float = Field(
        DEFAULT_KERNEL_WIDTH_A, ge=0.0, le=1.0,
        description="Standard deviation of the Gaussian kernel each pair distance is spread over, Å; 0 for the plain "
        "histogram. Stored in a task only when not the default, so older tasks keep their digests.",
    )

    @field_validator("pairs")
    @classmethod
    def _elements(cls, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        unknown = sorted({symbol for pair in pairs for symbol in pair if symbol not in CHEMICAL_SYMBOLS[1:]})
        if unknown:
            raise ValueError(f"unknown element symbols {unknown}")
        return pairs

    def stored(self) -> dict:
        """The settings as a task stores them: the kernel only when it is not the default."""
        return self.model_dump(mode="json", exclude={"kernel_width_A"} if self.kernel_width_A == DEFAULT_KERNEL_WIDTH_A
                               else set())


class AnalysisSettings(Strict):
    """Everything that decides a run's verdict besides its frames and the reference's."""

    rdf: RDFSettings = Field(default_factory=RDFSettings, description="Radial distribution function settings.")
    rdf_mae_threshold: PositiveFloat = Field(
        RDF_MAE_STABLE, description="The paper's verdict: a run is stable when its RDF MAE against the reference is "
        "below this (paper 0.02)."
    )
    fusion_distance_A: PositiveFloat = Field(
        FUSION_DISTANCE_A, description="A minimum interatomic distance below this is atom fusion."
    )
    diffusing_specie: str = Field(DEFAULT_DIFFUSING_SPECIE,
                                  description="Element whose MSD gives the diffusivity and conductivity.")
    target_temperature_K: Temperature_K = Field(DEFAULT_TARGET_TEMPERATURE_K,
                                                description="Arrhenius extrapolation temperature.")
    collapse_window_ps: PositiveFloat = Field(
        DEFAULT_COLLAPSE_WINDOW_PS, description="Window of the RDF MAE over time that dates a run's collapse, ps "
        "(MDsim: 1 ps). Stored in a task only when not the default, so older tasks keep their digests."
    )

    @field_validator("diffusing_specie")
    @classmethod
    def _element(cls, symbol: str) -> str:
        if symbol not in CHEMICAL_SYMBOLS[1:]:
            raise ValueError(f"unknown element symbols {[symbol]}")
        return symbol

    def stored(self) -> dict:
        """The settings as a task stores them (see ``RDFSettings.stored``)."""
        stored = self.model_dump(mode="json", exclude={"rdf", "collapse_window_ps"})
        if self.collapse_window_ps != DEFAULT_COLLAPSE_WINDOW_PS:
            stored["collapse_window_ps"] = self.collapse_window_ps
        return {"rdf": self.rdf.stored(), **stored}

    @property
    def specie_number(self) -> int:
        """The atomic number of the diffusing element."""
        return CHEMICAL_SYMBOLS.index(self.diffusing_specie)
