"""Nosé–Hoover chains for the torch engine (``mlff.md.torch_engine``): one chain per replica, advanced
for a batch of replicas at once.

The splitting is that of ASE's ``ase.md.nose_hoover_chain.NoseHooverChainThermostat``, which the ASE
engine uses, so that both engines follow the same trajectories: chains of NOSE_HOOVER_CHAIN_LENGTH,
one loop of fourth-order Suzuki–Yoshida sub-steps per half step, thermostat masses
Q_0 = 3 N kB T tdamp² and Q_j = kB T tdamp² (j > 0). Units follow ASE (eV, amu, Å; time in ASE units),
so ``eta`` and ``p_eta`` mean the same as ASE's. ``tests/mlff/md/test_thermostat.py`` checks both
representations below against ASE's thermostat over many half steps.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch

from mlff.md.protocol import NOSE_HOOVER_CHAIN_LENGTH
from records.units import BOLTZMANN_EV_K

# Fourth-order Suzuki–Yoshida weights for the thermostat sub-steps (Yoshida, Phys. Lett. A 150, 262, 1990).
YOSHIDA_WEIGHTS = (1 / (2 - 2 ** (1 / 3)), -(2 ** (1 / 3)) / (2 - 2 ** (1 / 3)), 1 / (2 - 2 ** (1 / 3)))


class NoseHooverChains:
    """Independent Nosé–Hoover chains, one per replica (ASE's NoseHooverChainThermostat, batched).

    ``temperature_K`` [n_replicas] are the targets and ``tdamp`` [n_replicas] the thermostat times
    (ASE time units) of replicas of ``n_atoms`` atoms each. Each replica's chain variables ``eta`` and
    ``p_eta`` (ASE units) are NOSE_HOOVER_CHAIN_LENGTH numbers. On the host (``device`` None) they are
    Python floats, [n_replicas][chain]: a few hundred float operations cost far less than as many
    tensor calls on tiny arrays, and only the kinetic energy goes to the host and one scale factor per
    replica comes back. On a device they are tensors [n_replicas, chain], advanced for all replicas at
    once by the same arithmetic (``_chain_half_step``), so that a step needs nothing from the host.
    """

    def __init__(self, temperature_K: list[float], tdamp: list[float], n_atoms: int, device: torch.device | None = None):
        self.n_dof, self.device = 3 * n_atoms, device
        kT = [BOLTZMANN_EV_K * kelvin for kelvin in temperature_K]  # [n_replicas] eV
        q_mass = [
            [kT_r * damping**2 * (self.n_dof if j == 0 else 1) for j in range(NOSE_HOOVER_CHAIN_LENGTH)]
            for kT_r, damping in zip(kT, tdamp)
        ]  # [n_replicas][chain]
        self.kT, self.q_mass = (kT, q_mass) if device is None else (self._on_device(kT), self._on_device(q_mass))
        zeros = np.zeros((len(kT), NOSE_HOOVER_CHAIN_LENGTH))
        self.set_state(zeros, zeros)

    def _on_device(self, values) -> torch.Tensor:
        return torch.as_tensor(np.asarray(values, dtype=np.float64), device=self.device)

    def set_state(self, eta: np.ndarray, p_eta: np.ndarray) -> None:
        """Set the chains' variables, [n_replicas, chain] each."""
        if self.device is None:
            self.eta, self.p_eta = eta.tolist(), p_eta.tolist()
        else:
            self.eta, self.p_eta = self._on_device(eta), self._on_device(p_eta)

    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """The chains' variables ``eta``, ``p_eta`` [n_replicas, chain]."""
        if self.device is not None:
            return self.eta.cpu().numpy(), self.p_eta.cpu().numpy()
        shape = (-1, NOSE_HOOVER_CHAIN_LENGTH)
        return np.asarray(self.eta, dtype=np.float64).reshape(shape), np.asarray(self.p_eta, dtype=np.float64).reshape(shape)

    def select(self, keep: list[int]) -> NoseHooverChains:
        """The chains of the replicas in slots ``keep``, in that order."""
        chosen = copy.copy(self)
        index = None if self.device is None else torch.as_tensor(keep, dtype=torch.long, device=self.device)
        for name in ("kT", "q_mass", "eta", "p_eta"):
            value = getattr(self, name)
            setattr(chosen, name, [value[slot] for slot in keep] if index is None else value.index_select(0, index))
        return chosen

    def half_step(self, momenta: torch.Tensor, delta, twice_kinetic):
        """exp(iL_NHC delta) on ``momenta`` [n, n_atoms, 3], whose ``(momenta**2 / masses).sum(dim=(1, 2))``
        is ``twice_kinetic`` [n]; ``delta`` [n] is 0 for unthermostatted replicas. ``delta`` and
        ``twice_kinetic`` are lists on the host, tensors on a device. Returns the new momenta and their
        twice-kinetic energies."""
        if self.device is not None:
            eta, p_eta = list(self.eta.unbind(1)), list(self.p_eta.unbind(1))  # [chain] of [n]
            scale = _chain_half_step(eta, p_eta, list(self.q_mass.unbind(1)), self.kT, self.n_dof, twice_kinetic,
                                     delta, torch.exp)  # [n]
            self.eta, self.p_eta = torch.stack(eta, dim=1), torch.stack(p_eta, dim=1)
            return momenta * scale.view(-1, 1, 1), twice_kinetic * scale.square()
        scale = [
            1.0 if delta[r] == 0.0 else _chain_half_step(
                self.eta[r], self.p_eta[r], self.q_mass[r], self.kT[r], self.n_dof, twice_kinetic[r], delta[r], math.exp
            )
            for r in range(len(delta))
        ]
        twice_kinetic = [kinetic * factor**2 for kinetic, factor in zip(twice_kinetic, scale)]
        if len(scale) == 1:
            return momenta * scale[0], twice_kinetic
        return momenta * torch.tensor(scale, dtype=momenta.dtype).to(momenta.device).view(-1, 1, 1), twice_kinetic


def _chain_half_step(eta: list, p_eta: list, q_mass: list, kT, n_dof: int, twice_kinetic, delta, exp):
    """Advance the chains ``eta`` and ``p_eta`` ([chain], replaced item by item) over ``delta``; returns the
    factor that scales the momenta. Each number is one replica's float on the host (``exp`` math.exp), or
    a tensor [n] of every replica's on a device (``exp`` torch.exp); ``q_mass`` [chain] is like them."""
    last = NOSE_HOOVER_CHAIN_LENGTH - 1

    def sweep(order: range, sub, kinetic_term) -> None:
        """Update p_eta[j] for j in ``order`` over ``sub / 2``, each between two damping quarter steps."""
        for j in order:
            if j < last:
                damp = exp(-0.25 * sub * p_eta[j + 1] / q_mass[j + 1])  # p_eta[j + 1] is fixed meanwhile
                p_eta[j] = p_eta[j] * damp
            p_eta[j] = p_eta[j] + 0.5 * sub * (kinetic_term if j == 0 else p_eta[j - 1] ** 2 / q_mass[j - 1] - kT)
            if j < last:
                p_eta[j] = p_eta[j] * damp

    scale, n_dof_kT = 1.0, n_dof * kT
    for weight in YOSHIDA_WEIGHTS:
        sub = weight * delta
        sweep(range(last, -1, -1), sub, twice_kinetic * scale**2 - n_dof_kT)
        for j in range(last + 1):
            eta[j] = eta[j] + sub * p_eta[j] / q_mass[j]
        scale = scale * exp(-sub * p_eta[0] / q_mass[0])
        sweep(range(last + 1), sub, twice_kinetic * scale**2 - n_dof_kT)
    return scale
