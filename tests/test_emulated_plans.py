"""The persistent kernel's launch plans (csrc/cuda/plan.h), unit-tested on the CPU for the property
sets of real GPUs and of a tiny device: every plan fits in shared memory, is co-resident where it
needs a CTA group (G > 1), and covers every row of W_hh and every batch item. The occupancy rule
is re-derived here, independently of plan.h."""
import itertools

import pytest
import torch

import emu_support

pytestmark = [pytest.mark.emulated]

PRESETS = ["h100", "a100", "l4", "rtx4090", "t4", "v100", "tiny"]
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
SIZES_B = [1, 3, 9, 64, 300]
SIZES_H = [1, 4, 33, 130, 257, 512, 1024, 2048]


def props(preset):
    keys = ["sm_count", "smem_optin", "smem_per_sm", "smem_reserved", "threads_per_sm",
            "blocks_per_sm", "regs_per_sm", "regs_per_block", "coop"]
    return dict(zip(keys, emu_support.ctl().device_props(preset)))


def plan(B, H, dtype, preset):
    keys = ["ok", "G", "R", "NBg", "BBg", "BC", "Hp", "threads", "smem", "max_coresident", "regs"]
    return dict(zip(keys, emu_support.ctl().persistent_plan(B, H, dtype, preset)))


def ceil_div(a, b):
    return -(-a // b)


def occupancy(d, threads, regs, smem):
    """Blocks of `threads` threads, `regs` registers each and `smem` bytes of shared memory that
    one SM holds (CUDA's occupancy rule)."""
    warps = ceil_div(threads, 32)
    regs_per_warp = ceil_div(ceil_div(regs, 8) * 8 * 32, 256) * 256
    by_regs = (d["regs_per_sm"] // regs_per_warp) // warps
    by_threads = d["threads_per_sm"] // (warps * 32)
    by_smem = d["smem_per_sm"] // (smem + d["smem_reserved"])
    return min(d["blocks_per_sm"], by_regs, by_threads, by_smem)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_plans_fit_and_cover(preset, dtype):
    d = props(preset)
    tw = torch.empty((), dtype=dtype).element_size()
    ta = 8 if dtype == torch.float64 else 4
    threads = 256 if dtype == torch.float64 else 512
    grouped = 0
    for B, H in itertools.product(SIZES_B, SIZES_H):
        p = plan(B, H, dtype, preset)
        what = f"{preset} {dtype} B={B} H={H}: {p}"
        if not p["ok"]:
            # Only where W_hh is too large for the shared memory of (half of) the whole device.
            assert H * H * tw > 0.5 * d["smem_optin"] * d["sm_count"], what
            continue
        assert p["threads"] == threads, what
        assert p["regs"] * threads <= d["regs_per_sm"], what  # the launch bounds' register budget
        # Rows: G CTAs of R rows (a multiple of 4) cover H, none is empty.
        assert p["R"] % 4 == 0 and p["G"] * p["R"] >= H and (p["G"] - 1) * p["R"] < H, what
        # Batch: NBg groups of BBg items cover B, none is empty; chunks of BC items.
        assert p["NBg"] * p["BBg"] >= B and (p["NBg"] - 1) * p["BBg"] < B, what
        assert p["BC"] % 4 == 0 and 4 <= p["BC"] <= ceil_div(p["BBg"], 4) * 4, what
        assert p["Hp"] % 128 == 0 and H <= p["Hp"] < H + 128, what
        # Shared memory: W rows + state rows + reduction tiles, within the per-block limit.
        tiles = (p["R"] // 4) * (p["BC"] // 4)
        smem = ceil_div(p["R"] * p["Hp"] * tw, 16) * 16 + p["BC"] * p["Hp"] * ta + max(tiles, threads // 32) * 16 * ta
        assert p["smem"] == smem <= d["smem_optin"], what
        occ = occupancy(d, threads, p["regs"], p["smem"])
        assert occ >= 1, what
        assert p["max_coresident"] == occ * d["sm_count"], what
        if p["G"] > 1:  # one barrier per step: the whole grid must be resident at once
            grouped += 1
            assert d["coop"] == 1, what
            assert p["G"] * p["NBg"] <= occ * d["sm_count"], what
            assert p["G"] <= d["sm_count"], what
    if preset == "tiny":
        assert grouped > 0, "the tiny device must force CTA groups"


@pytest.mark.parametrize("preset,dtype,H", [
    ("h100", torch.float32, 257), ("a100", torch.float32, 1024), ("l4", torch.bfloat16, 512),
    ("rtx4090", torch.float16, 1024), ("tiny", torch.float32, 33), ("tiny", torch.float64, 33),
    ("tiny", torch.float16, 130), ("tiny", torch.bfloat16, 130)])
def test_group_plans_where_expected(preset, dtype, H):
    """W_hh too large for one SM: a CTA group per batch slice (the emulated tests rely on the tiny
    device's groups at small H)."""
    for B in (1, 3, 64):
        p = plan(B, H, dtype, preset)
        assert p["ok"] and p["G"] > 1, (preset, dtype, H, B, p)


def test_single_cta_plans_on_big_devices():
    for preset in ("h100", "a100", "l4", "rtx4090"):
        for B in (1, 9, 200):
            p = plan(B, 128, torch.float32, preset)
            assert p["ok"] and p["G"] == 1 and p["NBg"] <= props(preset)["sm_count"], (preset, B, p)


def test_unknown_preset_raises():
    with pytest.raises(ValueError, match="unknown device preset"):
        emu_support.ctl().device_props("gtx480")
