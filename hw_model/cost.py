"""Latency and energy of a mapping on digital cores plus AIMC tiles: an analytical model.

LionHeart measured run time and energy with a cycle-accurate gem5-X simulation; this model
replaces it with counts of actions times per-action latency and energy from published figures
(``conf/hw/*.yaml``). All functions are pure; :class:`NetworkCost` precomputes the per-layer
costs once so that costing a mapping is a masked sum.

Per inference, for a layer with ``vectors`` input vectors of ``rows`` values producing ``cols``
outputs (int8 activations and weights, one byte each):

Digital layer (roofline over the cores)::

    t = max(macs / (cores * macs_per_cycle * f),  (weights + in + out) bytes / bandwidth)
    E = macs * e_mac + (weights + in + out) * e_byte

Analog layer (rb = ceil(rows / tile_rows) x cb = ceil(cols / tile_cols) tiles, all working in
parallel; p = min(tiles, cores) cores drive them; weights stay resident in the crossbars)::

    transfers/vector = ceil(rows * cb / B) + ceil(cols * rb / B)        # queue in, dequeue out
    post ops/vector  = (rb - 1) * cols + 2 * cols                       # partial sums, scale + bias
    t_vec = t_mvm + transfers * cycles_per_transfer / (f * p) + post / (p * ew_per_cycle * f)
    t = max(vectors * t_vec, (in + out) bytes / bandwidth)
    E = vectors * (tiles * e_mvm + transfers * e_transfer + post * e_elementwise) + (in + out) * e_byte

Compute with no mapping choice runs on all cores: attention matmul MACs at the MAC rate,
element-wise ops at the element-wise rate. Layers run one after another; the network's latency
is the sum, and static power (cores always, tiles when used) is drawn for the whole latency.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hw_model.system import System
from workloads.layers import Layer, LayerTable, UnmappableOps, build_layer_table
from workloads.registry import NetworkSpec

NS = 1e-9
PJ = 1e-12
MW = 1e-3


@dataclass(frozen=True)
class Cost:
    latency_s: float
    energy_j: float


def _core_rate_hz(system: System) -> float:
    return system.cores.clock_ghz * 1e9


def digital_layer_cost(layer: Layer, system: System) -> Cost:
    """One layer on the digital cores (int8, all cores in parallel)."""
    cores, memory = system.cores, system.memory
    bytes_moved = layer.weights + layer.in_elements + layer.out_elements
    t_compute = layer.macs / (cores.count * cores.macs_per_cycle * _core_rate_hz(system))
    t_memory = bytes_moved / (memory.bandwidth_gb_s * 1e9)
    energy = layer.macs * cores.e_mac_pj * PJ + bytes_moved * memory.e_byte_pj * PJ
    return Cost(max(t_compute, t_memory), energy)


def analog_blocks(layer: Layer, system: System) -> tuple[int, int]:
    """(row blocks, column blocks) of the layer's weight matrix on this system's tiles."""
    return math.ceil(layer.rows / system.tiles.rows), math.ceil(layer.cols / system.tiles.cols)


def analog_layer_cost(layer: Layer, system: System) -> Cost:
    """One layer on AIMC tiles, driven by the cores (see the module docstring)."""
    tiles, cores, link, memory = system.tiles, system.cores, system.interface, system.memory
    row_blocks, col_blocks = analog_blocks(layer, system)
    n_tiles = row_blocks * col_blocks
    drivers = min(n_tiles, cores.count)
    f = _core_rate_hz(system)
    transfers = (math.ceil(layer.rows * col_blocks / link.bytes_per_transfer)
                 + math.ceil(layer.cols * row_blocks / link.bytes_per_transfer))
    post_ops = (row_blocks - 1) * layer.cols + 2 * layer.cols
    t_vector = (tiles.t_mvm_ns * NS
                + transfers * link.cycles_per_transfer / (f * drivers)
                + post_ops / (drivers * cores.elementwise_ops_per_cycle * f))
    activation_bytes = layer.in_elements + layer.out_elements
    t_memory = activation_bytes / (memory.bandwidth_gb_s * 1e9)
    energy = (layer.vectors * (n_tiles * tiles.e_mvm_pj + transfers * link.e_transfer_pj
                               + post_ops * cores.e_elementwise_pj) * PJ
              + activation_bytes * memory.e_byte_pj * PJ)
    return Cost(max(layer.vectors * t_vector, t_memory), energy)


def unmappable_cost(ops: UnmappableOps, system: System) -> Cost:
    """Attention matmuls and element-wise work, always on the cores."""
    cores = system.cores
    f = _core_rate_hz(system)
    latency = (ops.macs / (cores.count * cores.macs_per_cycle * f)
               + ops.elementwise / (cores.count * cores.elementwise_ops_per_cycle * f))
    energy = (ops.macs * cores.e_mac_pj + ops.elementwise * cores.e_elementwise_pj) * PJ
    return Cost(latency, energy)


@dataclass(frozen=True)
class MappingCost:
    """System cost of one mapping, relative to all-digital."""

    latency_s: float
    energy_j: float
    tiles_used: int
    feasible: bool  # all analog layers are analog-capable and their tiles fit
    speedup: float
    energy_gain: float


class NetworkCost:
    """Per-layer digital and analog costs of one network on one system, precomputed.

    A mapping is a sequence of L booleans (True = analog) in layer-table order.
    """

    def __init__(self, table: LayerTable, system: System) -> None:
        self.table, self.system = table, system
        digital = [digital_layer_cost(layer, system) for layer in table.layers]
        analog = [analog_layer_cost(layer, system) for layer in table.layers]
        self.digital_latency_s = np.array([c.latency_s for c in digital])
        self.digital_energy_j = np.array([c.energy_j for c in digital])
        self.analog_latency_s = np.array([c.latency_s for c in analog])
        self.analog_energy_j = np.array([c.energy_j for c in analog])
        self.tiles = np.array([np.prod(analog_blocks(layer, system)) for layer in table.layers], dtype=np.int64)
        self.analog_capable = np.array([layer.analog_capable for layer in table.layers], dtype=bool)
        self.macs = np.array([layer.macs for layer in table.layers], dtype=np.int64)
        fixed = unmappable_cost(table.unmappable, system)
        self.fixed_latency_s, self.fixed_energy_j = fixed.latency_s, fixed.energy_j
        self.core_static_w = system.cores.count * system.cores.static_power_mw * MW
        self.tile_static_w = system.tiles.static_power_mw * MW
        self.tile_capacity = int(system.tiles.count)
        base_latency = self.digital_latency_s.sum() + self.fixed_latency_s
        self.baseline = Cost(float(base_latency),
                             float(self.digital_energy_j.sum() + self.fixed_energy_j + self.core_static_w * base_latency))

    def __len__(self) -> int:
        return len(self.tiles)

    def _as_mappings(self, mapping: np.ndarray) -> np.ndarray:
        mapping = np.asarray(mapping, dtype=bool)
        if mapping.shape[-1] != len(self):
            raise ValueError(f"{self.table.network}: a mapping has {len(self)} entries, got {mapping.shape[-1]}")
        return mapping

    def evaluate_batch(self, mappings: np.ndarray) -> dict[str, np.ndarray]:
        """Vectorised costs of N mappings (N, L) -> arrays of N."""
        m = self._as_mappings(np.atleast_2d(mappings))
        latency = np.where(m, self.analog_latency_s, self.digital_latency_s).sum(axis=1) + self.fixed_latency_s
        tiles_used = (m * self.tiles).sum(axis=1)
        energy = (np.where(m, self.analog_energy_j, self.digital_energy_j).sum(axis=1) + self.fixed_energy_j
                  + (self.core_static_w + self.tile_static_w * tiles_used) * latency)
        feasible = (tiles_used <= self.tile_capacity) & ~(m & ~self.analog_capable).any(axis=1)
        return {"latency_s": latency, "energy_j": energy, "tiles_used": tiles_used, "feasible": feasible,
                "speedup": self.baseline.latency_s / latency, "energy_gain": self.baseline.energy_j / energy}

    def evaluate(self, mapping) -> MappingCost:
        """Cost of one mapping (a sequence of L booleans, True = analog): :meth:`evaluate_batch`
        of a batch of one."""
        m = self._as_mappings(mapping)
        if m.ndim != 1:
            raise ValueError(f"{self.table.network}: evaluate takes one mapping; use evaluate_batch for {m.shape}")
        row = {key: value[0] for key, value in self.evaluate_batch(m).items()}
        return MappingCost(float(row["latency_s"]), float(row["energy_j"]), int(row["tiles_used"]),
                           bool(row["feasible"]), float(row["speedup"]), float(row["energy_gain"]))

    def all_analog(self) -> np.ndarray:
        """Every analog-capable layer analog (may exceed the tile capacity)."""
        return self.analog_capable.copy()

    def breakdown(self) -> list[dict]:
        """Per-layer digital and analog latency/energy and the analog gain of each."""
        rows = []
        for i, layer in enumerate(self.table.layers):
            rows.append({
                "index": layer.index, "name": layer.name, "kind": layer.kind, "macs": layer.macs,
                "tiles": int(self.tiles[i]), "analog_capable": bool(self.analog_capable[i]),
                "digital_latency_s": float(self.digital_latency_s[i]),
                "analog_latency_s": float(self.analog_latency_s[i]),
                "digital_energy_j": float(self.digital_energy_j[i]),
                "analog_energy_j": float(self.analog_energy_j[i]),
                "speedup": float(self.digital_latency_s[i] / self.analog_latency_s[i]),
                "energy_gain": float(self.digital_energy_j[i] / self.analog_energy_j[i]),
            })
        return rows


def network_cost(spec: NetworkSpec, system: System) -> NetworkCost:
    """The layer table of ``spec`` on ``system``'s tile size, costed."""
    table = build_layer_table(spec.build(), spec.input_shape, spec.name, system.tiles.rows, system.tiles.cols)
    return NetworkCost(table, system)
