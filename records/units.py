"""The one table of units and physical constants, for every layer.

Names say their units; a conversion happens once, with one of these. Engines work in ASE's units
(Å, eV, amu, ASE time), and ``ASE_TIME_PER_FS`` converts to and from them. k_B is the one of that
unit system (ASE's CODATA 2014 value, which ASE's own thermostats use, so every engine and the analysis
share it; it differs from the exact SI 2019 value by 3.4e-7 relative); e is the exact SI 2019 value.
"""

from __future__ import annotations

from ase import units as _ase_units

# Time
FS_PER_PS = 1000.0
FS_PER_NS = 1e6
S_PER_DAY = 86400.0
ASE_TIME_PER_FS = _ase_units.fs  # ASE's internal time unit per femtosecond
ASE_TIME_PER_PS = FS_PER_PS * _ase_units.fs  # ASE's internal time unit per picosecond (LAMMPS metal time)

# Physical constants
BOLTZMANN_EV_K = _ase_units.kB  # k_B in eV/K (8.6173303e-5)
ELEMENTARY_CHARGE_C = 1.602176634e-19  # e in C (SI 2019, exact)

# Transport
A2_PER_FS_TO_CM2_PER_S = 1e-16 / 1e-15  # 1 Å²/fs = 1e-16 cm² / 1e-15 s = 0.1 cm²/s
A3_TO_CM3 = 1e-24  # 1 Å³ = 1e-24 cm³
S_TO_MS = 1e3  # S/cm -> mS/cm
