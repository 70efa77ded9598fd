"""ind_rnn.native.build: the instruction-set level switch and the cache key."""
import os
import platform

import pytest

from ind_rnn.native import build

LEVELS = ["x86-64-v2", "x86-64-v3", "x86-64-v4"]


def test_default_is_native(monkeypatch):
    monkeypatch.delenv(build.ISA_VARIABLE, raising=False)
    assert build.requested_isa() == "native"
    monkeypatch.setenv(build.ISA_VARIABLE, "  ")
    assert build.requested_isa() == "native"


def test_the_level_is_in_the_cache_name_and_key(tmp_path):
    source = tmp_path / "ops.cc"
    source.write_text("// a kernel\n")
    paths = {isa: build.library_path(str(source), str(tmp_path), isa)
             for isa in ["native", "x86-64-v2", "x86-64-v3"]}
    assert len(set(paths.values())) == 3
    assert os.path.basename(paths["x86-64-v2"]).startswith("ops_x86-64-v2_")
    # Only -march=native may fall back to the portable build.
    assert len(build._optimisations("native")) == 2
    assert build._optimisations("x86-64-v2") == (
        ["-O3", "-fno-trapping-math", "-march=x86-64-v2", "-mno-avx512fp16"],)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 levels")
def test_a_level_above_the_cpu_is_refused_naming_the_variable(monkeypatch):
    have = build.cpu_level()
    above = [level for level in LEVELS if have not in LEVELS
             or LEVELS.index(level) > LEVELS.index(have)]
    if not above:
        pytest.skip(f"this CPU runs every level ({have})")
    monkeypatch.setenv(build.ISA_VARIABLE, above[0])
    with pytest.raises(ValueError, match=rf"`{build.ISA_VARIABLE}`.*{above[0]}.*{have}"):
        build.requested_isa()
    for level in LEVELS[:LEVELS.index(have) + 1] if have in LEVELS else []:
        monkeypatch.setenv(build.ISA_VARIABLE, level)
        assert build.requested_isa() == level


def test_describe_names_cpu_levels_and_build(monkeypatch):
    monkeypatch.setenv(build.ISA_VARIABLE, "native")
    line = build.describe()
    assert build.cpu_model() in line and build.cpu_level() in line and "-march=native" in line
