"""The one table of units and physical constants, for every layer.

Names say their units; a conversion happens once, with one of these. Engines work in ASE's units
(Å, eV, amu, ASE time), and ``ASE_TIME_PER_FS`` converts to and from them. Physical constants are the
exact SI 2019 values.
"""

from __future__ import annotations

from ase import units as _ase_units

# Time
FS_PER_PS = 1000.0
FS_PER_NS = 1e6
S_PER_DAY = 86400.0
ASE_TIME_PER_FS = _ase_units.fs  # ASE's internal time unit per femtosecond
ASE_TIME_PER_PS = FS_PER_PS * _ase_units.fs  # ASE's internal time unit per picosecond (LAMMPS metal time)

# Physical constants (SI 2019, exact)
BOLTZMANN_J_K = 1.380649e-23  # k_B in J/K
ELEMENTARY_CHARGE_C = 1.602176634e-19  # e in C
BOLTZMANN_EV_K = BOLTZMANN_J_K / ELEMENTARY_CHARGE_C  # k_B in eV/K (8.617333262e-5)

# Transport
A2_PER_FS_TO_CM2_PER_S = 1e-16 / 1e-15  # 1 Å²/fs = 1e-16 cm² / 1e-15 s = 0.1 cm²/s
A3_TO_CM3 = 1e-24  # 1 Å³ = 1e-24 cm³
S_TO_MS = 1e3  # S/cm -> mS/cm
