"""ind_rnn.native.build: the instruction-set level switch and the cache key."""
import importlib
import os
import platform
import re

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



def test_a_changed_header_beside_the_source_is_a_new_build(tmp_path):
    """The DilatedRNN kernels include headers beside drnn_ops.cc: editing one
    must not load the library built before the edit."""
    source = tmp_path / "ops.cc"
    source.write_text('#include "tiles.h"\n')
    header = tmp_path / "tiles.h"
    header.write_text("// tiles of 4\n")
    before = build.library_path(str(source), str(tmp_path), "x86-64-v2")
    assert build.library_path(str(source), str(tmp_path), "x86-64-v2") == before
    header.write_text("// tiles of 8\n")
    after_edit = build.library_path(str(source), str(tmp_path), "x86-64-v2")
    (tmp_path / "more.h").write_text("// new\n")
    after_new_header = build.library_path(str(source), str(tmp_path), "x86-64-v2")
    assert len({before, after_edit, after_new_header}) == 3


@pytest.mark.parametrize("package", ["ind_rnn", "dilated_rnn"])
def test_the_kernel_headers_ship_with_the_package(package):
    """The headers a kernel source includes exist beside it, and setup.py's
    package data ships them."""
    native = importlib.import_module(f"{package}.native")
    folder = os.path.dirname(native.SOURCE)
    with open(native.SOURCE, encoding="utf-8") as file:
        included = re.findall(r'#include "([a-z_]+\.h)"', file.read())
    assert included, f"{native.SOURCE} includes its headers"
    for name in included:
        assert os.path.exists(os.path.join(folder, name)), name
    setup_py = os.path.join(os.path.dirname(os.path.dirname(folder)), "setup.py")
    with open(setup_py, encoding="utf-8") as file:
        assert re.search(rf'"{package}": \[[^]]*"native/\*\.h"', file.read())


def _flags_up_to(level):
    """/proc/cpuinfo's flags of a CPU whose highest x86-64 level is `level`."""
    flags = set()
    for name, needed in build._X86_LEVELS:  # pylint: disable=protected-access
        if LEVELS.index(name) > LEVELS.index(level):
            break
        flags.update(needed)
    return flags


@pytest.mark.parametrize("have", LEVELS)
def test_a_level_above_the_cpu_is_refused_naming_the_variable(monkeypatch, have):
    # A CPU of each level, whatever this machine is: the levels up to it are
    # built, the ones above it refused with a message naming the variable.
    monkeypatch.setattr(build.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(build, "_cpu_flags", lambda: _flags_up_to(have))
    assert build.cpu_level() == have
    for level in LEVELS:
        monkeypatch.setenv(build.ISA_VARIABLE, level)
        if LEVELS.index(level) <= LEVELS.index(have):
            assert build.requested_isa() == level
        else:
            with pytest.raises(ValueError, match=rf"`{build.ISA_VARIABLE}`.*{level}.*{have}"):
                build.requested_isa()


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 levels")
def test_this_cpus_own_level_is_accepted(monkeypatch):
    have = build.cpu_level()
    if have not in LEVELS:
        pytest.skip(f"this CPU is below {LEVELS[0]} ({have})")
    monkeypatch.setenv(build.ISA_VARIABLE, have)
    assert build.requested_isa() == have


def test_describe_names_cpu_levels_and_build(monkeypatch):
    monkeypatch.setenv(build.ISA_VARIABLE, "native")
    line = build.describe()
    assert build.cpu_model() in line and build.cpu_level() in line and "-march=native" in line


def test_a_build_says_so_on_stderr_before_it_starts(tmp_path, monkeypatch, capsys):
    """A first run sits 15-30 s in the compiler: the user is told, whatever the log level."""
    compiled = []

    def fake_compile(source, target, isa):
        compiled.append(isa)
        assert "compiling the C++ CPU kernels" in capsys.readouterr().err  # said before
        raise RuntimeError("no compiler in this test")

    monkeypatch.setattr(build, "_compile", fake_compile)
    monkeypatch.setenv("TEST_KERNELS_CACHE", str(tmp_path))
    monkeypatch.setenv(build.ISA_VARIABLE, "native")
    source = tmp_path / "kernel.cc"
    source.write_text("// nothing\n")
    assert build.load_op_library(str(source), "some_package", "TEST_KERNELS_SWITCH",
                                 "TEST_KERNELS_CACHE") is None  # the failure falls back
    assert compiled == ["native"]
