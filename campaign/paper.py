"""The paper's published values, as cited reference data beside a campaign's own.

Duangdangchote, Seferos and Voznyy, "Stability and transferability of machine learning force fields
for molecular dynamics applications", Digital Discovery 2024, 3, 2177 (CC BY-NC 3.0):

* Table 1: each model's parameter count on the Li10GeP2S12 training set (millions) and MD speed
  (ns per day, one replica on an RTX 4090); the AIMD reference's speed.
* Table 2: −log10 σ(300 K), σ in mS/cm, Arrhenius-extrapolated from MLFF-MD (and AIMD) at several
  temperatures, on Li10GeP2S12, Li3PS4 and Li4GeS4. None where the paper gives N/A.

Keys are this project's: model names of the registry, ``reference`` for AIMD, and the built-in
structures' names for the materials (a campaign's materials of those names get the paper's values).
"""

from __future__ import annotations

from records.results import REFERENCE_SOURCE

CITATION = ("S. Duangdangchote, D. S. Seferos and O. Voznyy, Digital Discovery, 2024, 3, 2177, "
            "doi:10.1039/d4dd00140k")

# Table 1: model -> (parameters in millions, MD ns/day); the reference's parameter count is not applicable.
TABLE_1 = {
    REFERENCE_SOURCE: (None, 0.034),
    "cgcnn": (0.25, 45.0),
    "schnet": (0.49, 22.5),
    "dimenet": (1.11, 1.4),
    "dimenet++": (1.49, 6.0),
    "gns-tat": (1.97, 10.0),
    "deeper-gatgnn": (0.22, 30.0),
    "scn": (20.44, 2.8),
    "escn": (34.28, 8.1),
    "forcenet": (11.37, 25.7),
    "equiformer": (7.84, 3.0),
    "leftnet": (2.12, 11.3),
}

# Table 2: model -> material -> −log10 σ(300 K) [mS/cm].
TABLE_2 = {
    REFERENCE_SOURCE: {"LGPS": -1.41, "Li3PS4": 0.84, "Li4GeS4": 13.59},
    "cgcnn": {"LGPS": 0.269, "Li3PS4": 5.96, "Li4GeS4": -2.41},
    "schnet": {"LGPS": -1.31, "Li3PS4": None, "Li4GeS4": None},
    "dimenet": {"LGPS": -0.51, "Li3PS4": 0.33, "Li4GeS4": 8.00},
    "dimenet++": {"LGPS": -1.10, "Li3PS4": 0.24, "Li4GeS4": 6.42},
    "gns-tat": {"LGPS": -0.99, "Li3PS4": 6.89, "Li4GeS4": 46.81},
    "deeper-gatgnn": {"LGPS": -2.70, "Li3PS4": -2.06, "Li4GeS4": 2.13},
    "scn": {"LGPS": -0.85, "Li3PS4": -0.72, "Li4GeS4": 75.95},
    "escn": {"LGPS": -0.81, "Li3PS4": 5.17, "Li4GeS4": 76.73},
    "forcenet": {"LGPS": 21.03, "Li3PS4": 8.67, "Li4GeS4": 8.67},
    "equiformer": {"LGPS": -1.06, "Li3PS4": 0.332, "Li4GeS4": 3.97},
    "leftnet": {"LGPS": -1.25, "Li3PS4": 1.72, "Li4GeS4": 3.33},
}
PAPER_COLUMN = "paper_neg_log10_sigma"


def with_paper_values(rows: list[dict]) -> list[dict]:
    """Table rows (``model``, ``material``) with the paper's −log10 σ(300 K) beside them (None where it has none)."""
    return [{**row, PAPER_COLUMN: TABLE_2.get(row["model"], {}).get(row["material"])} for row in rows]
