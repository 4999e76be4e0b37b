"""The CPU description every benchmark JSON and /healthz carries: parsed from /proc/cpuinfo text of each kind."""

from __future__ import annotations

from emotion.core.cpu import _cpuinfo_fields, cpu_info, int8_instruction_sets

XEON = """processor\t: 0
vendor_id\t: GenuineIntel
model name\t: Intel(R) Xeon(R) Platinum 8488C
flags\t\t: fpu sse avx2 avx512f avx512bw avx512_vnni amx_bf16 amx_tile amx_int8 avx_vnni

processor\t: 1
model name\t: something else
"""
EPYC_AVX2 = """processor\t: 0
model name\t: AMD EPYC 7R13 Processor
flags\t\t: fpu sse avx avx2 fma bmi2
"""
GRAVITON = """processor\t: 0
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp
"""


def test_xeon_with_vnni_and_amx() -> None:
    model, flags = _cpuinfo_fields(XEON)
    assert model == "Intel(R) Xeon(R) Platinum 8488C"  # the first processor block only
    assert int8_instruction_sets(flags) == ["avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx"]


def test_epyc_with_avx2_only() -> None:
    model, flags = _cpuinfo_fields(EPYC_AVX2)
    assert model == "AMD EPYC 7R13 Processor"
    assert int8_instruction_sets(flags) == ["avx2"]


def test_arm_neon_and_dotprod() -> None:
    _, flags = _cpuinfo_fields(GRAVITON)
    assert int8_instruction_sets(flags) == ["neon", "dotprod"]


def test_this_machine_is_described() -> None:
    info = cpu_info()
    assert set(info) == {"model", "machine", "cores", "instruction_sets"}
    assert isinstance(info["cores"], int) and info["cores"] >= 1
    assert info["model"]


def test_preferred_precision_is_int8_only_where_onnxruntime_has_a_fast_integer_path() -> None:
    from emotion.core.cpu import preferred_precision

    assert preferred_precision(["avx2"]) == "int8"
    assert preferred_precision(["avx2", "avx512f", "avx512bw", "avx512_vnni"]) == "int8"
    assert preferred_precision(["neon", "dotprod"]) == "int8"
    assert preferred_precision(["neon"]) == "fp32"  # ARM without dotprod
    assert preferred_precision([]) == "fp32"  # x86-64 without AVX2
