"""Startup benchmark of the ``framework`` command, measured against floors in one run.

A command-line tool is judged by how long it takes to start: ``framework --help`` must stay
quick however many plugins are installed, and a plugin module that only needs ``hookimpl``
must not pay for the whole runtime. This script builds a fresh virtualenv in a temporary
directory, installs the core into it (the repository, non-editable, as a user would), and
times whole processes (spawn to exit, wall clock) in that virtualenv, each against a floor
measured in the same run. It prints the figures, the goals of issue 3 with a PASS or MISS
marker each, and reference figures of other projects for scale:

- floor: ``python -c pass``;
- ``python -c "import framework"``; goal at most 120 ms more than the floor;
- ``framework --help``; goal at most 200 ms more than the floor;
- then, with 100 generated plugin distributions installed (one ``pip install`` of 100 wheels
  written by this script; each has an entry point in group ``framework`` whose module holds
  one ``@hookimpl def register_workers(register)`` that registers its ``BaseWorker``
  subclass by import path, as the agent-plugin-echo template does, so listing plugins
  does not import the workers):
  ``framework plugins`` against the floor of a ``python -c`` script that calls
  ``importlib.metadata.entry_points(group="framework")`` and loads each entry point; goal at
  most 1.5x that floor. ``framework --help`` and ``import framework`` are measured again
  with the plugins installed, for information.

Commands compared with each other are run interleaved, one of each per round, so a drift of
the machine's speed moves both sides of a comparison alike; the first rounds are warm-up
and discarded, and the median of the others is reported. The subprocesses get a clean
environment (no ``PYTHON*`` or ``FRAMEWORK_*`` variables). A detail line under each
``framework`` figure says which heavy modules (pydantic, anyio) the process imported, from
one ``python -X importtime`` run.

Run: ``python bench/startup.py`` (about 25 s on a 2-CPU machine, venv and installs
included; pip may use the package index for the core's dependencies), ``--quick`` (about
15 s), ``--keep`` (leave the temporary directory for profiling), or ``tox -e bench``. It
is a benchmark, not a test: it always exits 0 when it ran.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = 100
HEAVY_MODULES = ("pydantic", "anyio")

# Goals (issue 3, "Speed").
GOAL_IMPORT_MS = 120.0
GOAL_HELP_MS = 200.0
GOAL_PLUGINS_RATIO = 1.5

# For scale (issue 3): importing pipecat-ai-subagents takes 717 ms on this kind of machine;
# llm's users reported `llm --help` growing from 1.3 s to 10.7 s with plugins installed.
REF_PIPECAT_IMPORT_MS = 717.0
REF_LLM_HELP_S = 1.3
REF_LLM_HELP_PLUGINS_S = 10.7

ENTRY_POINTS_FLOOR = (
    "import importlib.metadata as m\nfor ep in m.entry_points(group='framework'):\n    ep.load()\n"
)


@dataclass(frozen=True)
class Settings:
    """How much to measure: ``--quick`` shrinks every count."""

    runs: int
    """Measured runs of each command (medians are taken over these)."""
    warmup: int
    """Rounds run first and discarded."""


NORMAL = Settings(runs=15, warmup=2)
QUICK = Settings(runs=5, warmup=1)


# ----------------------------------------------------------------------------- environment


def clean_env() -> dict[str, str]:
    """The environment of the measured processes: no PYTHON* or FRAMEWORK_* variables."""
    return {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PYTHON", "FRAMEWORK_")) and key not in ("VIRTUAL_ENV",)
    }


def run_checked(
    command: list[str], what: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    """Run ``command``; raise with its output when it fails; return its stdout."""
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=cwd, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{what} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout


def copy_core(dest: Path) -> Path:
    """Copy what building the core needs (top-level files and ``framework/``) to ``dest``.

    Building from a copy keeps pip's in-tree ``build/`` and ``*.egg-info`` out of the
    repository, and away from a concurrent tox build.
    """
    dest.mkdir()
    for item in ROOT.iterdir():
        if item.is_file() and item.suffix != ".whl":
            shutil.copy2(item, dest / item.name)
    shutil.copytree(
        ROOT / "framework",
        dest / "framework",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    return dest


def make_venv(path: Path, core: Path) -> None:
    """A fresh virtualenv at ``path`` with the core installed (non-editable) and its deps."""
    run_checked([sys.executable, "-m", "venv", str(path)], "python -m venv")
    python = str(path / "bin" / "python")
    run_checked(
        [python, "-m", "pip", "install", "-q", "--disable-pip-version-check", str(core)],
        "pip install of the core",
        env=clean_env(),
    )


# ----------------------------------------------------------------------------- plugins


def plugin_files(index: int) -> dict[str, str]:
    """The files of plugin distribution ``index``: a package whose ``__init__`` holds the
    hookimpl and whose ``worker`` submodule holds the worker class."""
    package = f"bench_plugin_{index:03d}"
    name = f"bench-plugin-{index:03d}"
    dist_info = f"{package}-0.1.0.dist-info"
    return {
        f"{package}/__init__.py": (
            f'"""Generated benchmark plugin {index:03d}."""\n\n'
            "from framework import hookimpl\n\n\n"
            "@hookimpl\n"
            "def register_workers(register):\n"
            f'    register("{package}.worker:BenchWorker{index:03d}", name="bench-{index:03d}")\n'
        ),
        f"{package}/worker.py": (
            "from framework import BaseWorker, Job, job\n\n\n"
            f"class BenchWorker{index:03d}(BaseWorker):\n"
            "    @job\n"
            "    async def handle(self, job: Job) -> dict:\n"
            f'        return {{"plugin": {index}}}\n'
        ),
        f"{dist_info}/METADATA": (
            "Metadata-Version: 2.1\n"
            f"Name: {name}\n"
            "Version: 0.1.0\n"
            f"Summary: Generated benchmark plugin {index:03d}\n"
            "Requires-Dist: agent-plugin-framework\n"
        ),
        f"{dist_info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: bench/startup.py\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n"
        ),
        f"{dist_info}/entry_points.txt": f"[framework]\nbench-{index:03d} = {package}\n",
        f"{dist_info}/top_level.txt": f"{package}\n",
    }


def write_wheel(directory: Path, index: int) -> Path:
    """Write plugin ``index`` as a wheel (a zip with a RECORD of hashes) into ``directory``."""
    files = plugin_files(index)
    package = f"bench_plugin_{index:03d}"
    record_name = f"{package}-0.1.0.dist-info/RECORD"
    records = []
    path = directory / f"{package}-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        for name, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            records.append(f"{name},sha256={digest.decode()},{len(data)}")
            wheel.writestr(name, data)
        records.append(f"{record_name},,")
        wheel.writestr(record_name, "\n".join(records) + "\n")
    return path


def install_plugins(venv: Path, directory: Path) -> None:
    """Generate PLUGINS wheels and install them all with one pip command."""
    directory.mkdir()
    wheels = [str(write_wheel(directory, i)) for i in range(PLUGINS)]
    run_checked(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-index",
            *wheels,
        ],
        "pip install of the plugins",
        env=clean_env(),
    )


# ----------------------------------------------------------------------------- timing


def time_once(command: list[str], env: dict[str, str], cwd: Path) -> float:
    """Wall time of one whole process, spawn to exit; raises when it fails."""
    t0 = time.perf_counter()
    done = subprocess.run(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=cwd, check=False
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace")
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}:\n{stderr}")
    return elapsed


def interleaved(
    settings: Settings, commands: dict[str, list[str]], env: dict[str, str], cwd: Path
) -> dict[str, list[float]]:
    """Run each command once per round, in turn; the first ``warmup`` rounds are discarded."""
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for round_index in range(settings.warmup + settings.runs):
        for name, command in commands.items():
            elapsed = time_once(command, env, cwd)
            if round_index >= settings.warmup:
                samples[name].append(elapsed)
    return samples


def heavy_imports(command: list[str], env: dict[str, str], cwd: Path) -> str:
    """Which HEAVY_MODULES (and how many modules) one run of ``command`` imports.

    ``command`` is ``[python, ...]``; it is rerun with ``-X importtime``.
    """
    done = subprocess.run(
        [command[0], "-X", "importtime", *command[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=cwd,
        check=False,
    )
    modules = []
    for line in done.stderr.splitlines():
        fields = line.removeprefix("import time:").split("|")
        if len(fields) == 3 and fields[1].strip().isdigit():  # not the header line
            modules.append(fields[2].strip())
    loaded = {m.split(".")[0].strip() for m in modules}
    heavy = [m for m in HEAVY_MODULES if m in loaded]
    return f"{len(modules)} modules imported; heavy: {', '.join(heavy) or 'none'}"


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def spread(samples: list[float]) -> str:
    """p10..p90 and the sample count, for judging how stable a median is."""
    q = statistics.quantiles(samples, n=10)
    return f"p10 {q[0] * 1000:,.1f} / p90 {q[-1] * 1000:,.1f} ms, n={len(samples)}"


# ----------------------------------------------------------------------------- report


def mark(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def row(label: str, value: str, ratio: str = "", goal: str = "", ok: bool | None = None) -> None:
    verdict = "" if ok is None else mark(ok)
    print(f"{label:<38} {value:>12}  {ratio:<21} {goal:<20} {verdict}".rstrip())


def detail(text: str) -> None:
    print(f"{'':<10}{text}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary virtualenv (prints its path)"
    )
    args = parser.parse_args()
    settings = QUICK if args.quick else NORMAL
    started = time.perf_counter()

    tmp = Path(tempfile.mkdtemp(prefix="framework-bench-startup-"))
    try:
        report(settings, tmp, args.quick, started)
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(settings: Settings, tmp: Path, quick: bool, started: float) -> None:
    venv = tmp / "venv"
    python = str(venv / "bin" / "python")
    framework = str(venv / "bin" / "framework")
    env = clean_env()
    cwd = tmp  # no framework.toml or pyproject.toml here

    t0 = time.perf_counter()
    make_venv(venv, copy_core(tmp / "core"))
    setup_s = time.perf_counter() - t0
    version = run_checked(
        [python, "-c", "import platform; print(platform.python_version())"], "python -V", env=env
    ).strip()
    print(
        f"agent-plugin-framework startup: Python {version}, fresh venv, "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{'quick' if quick else 'normal'} run ({settings.runs} runs per figure, "
        f"{settings.warmup} warm-up)"
    )
    detail(f"venv + pip install of the core: {setup_s:.1f} s")
    print()
    row("measure (whole process, median)", "ours", "vs floor", "goal", None)

    floor_cmd = [python, "-c", "pass"]
    import_cmd = [python, "-c", "import framework"]
    help_cmd = [framework, "--help"]
    help_traced = [python, "-c", "from framework.cli import main; main()", "--help"]

    core = interleaved(
        settings, {"floor": floor_cmd, "import": import_cmd, "help": help_cmd}, env, cwd
    )
    floor = median_ms(core["floor"])
    row("floor: python -c pass", f"{floor:.1f} ms")
    detail(spread(core["floor"]))
    imp = median_ms(core["import"])
    row(
        'python -c "import framework"',
        f"{imp:.1f} ms",
        f"+{imp - floor:.1f} ms",
        f"<= +{GOAL_IMPORT_MS:g} ms",
        imp - floor <= GOAL_IMPORT_MS,
    )
    detail(spread(core["import"]))
    detail(heavy_imports(import_cmd, env, cwd))
    help_ms = median_ms(core["help"])
    row(
        "framework --help",
        f"{help_ms:.1f} ms",
        f"+{help_ms - floor:.1f} ms",
        f"<= +{GOAL_HELP_MS:g} ms",
        help_ms - floor <= GOAL_HELP_MS,
    )
    detail(spread(core["help"]))
    detail(heavy_imports(help_traced, env, cwd))

    t0 = time.perf_counter()
    install_plugins(venv, tmp / "wheels")
    install_s = time.perf_counter() - t0
    listing = run_checked([framework, "plugins"], "framework plugins", env=env, cwd=cwd)
    registered = sum(f"bench-{i:03d}" in listing for i in range(PLUGINS))
    if registered != PLUGINS or "error:" in listing:
        raise RuntimeError(f"framework plugins shows {registered} of {PLUGINS}:\n{listing}")

    print()
    print(f"with {PLUGINS} plugin distributions installed (one pip install: {install_s:.1f} s)")
    plugins_traced = [python, "-c", "from framework.cli import main; main()", "plugins"]
    with_plugins = interleaved(
        settings,
        {
            "floor": floor_cmd,
            "entry_points": [python, "-c", ENTRY_POINTS_FLOOR],
            "plugins": [framework, "plugins"],
            "help": help_cmd,
            "import": import_cmd,
        },
        env,
        cwd,
    )
    floor2 = median_ms(with_plugins["floor"])
    row("floor: python -c pass", f"{floor2:.1f} ms")
    detail(spread(with_plugins["floor"]))
    eps = median_ms(with_plugins["entry_points"])
    row(
        f"floor: entry_points() + load x{PLUGINS}",
        f"{eps:.1f} ms",
        f"+{eps - floor2:.1f} ms",
    )
    detail(spread(with_plugins["entry_points"]))
    plugins_ms = median_ms(with_plugins["plugins"])
    ratio = plugins_ms / eps
    row(
        "framework plugins",
        f"{plugins_ms:.1f} ms",
        f"{ratio:.2f}x entry points",
        f"<= {GOAL_PLUGINS_RATIO:g}x entry points",
        ratio <= GOAL_PLUGINS_RATIO,
    )
    detail(spread(with_plugins["plugins"]))
    detail(heavy_imports(plugins_traced, env, cwd))
    help2 = median_ms(with_plugins["help"])
    row("framework --help", f"{help2:.1f} ms", f"+{help2 - floor2:.1f} ms")
    detail(f"{spread(with_plugins['help'])}; {help2 - help_ms:+.1f} ms vs no plugins")
    detail(heavy_imports(help_traced, env, cwd))
    imp2 = median_ms(with_plugins["import"])
    row('python -c "import framework"', f"{imp2:.1f} ms", f"+{imp2 - floor2:.1f} ms")
    detail(f"{spread(with_plugins['import'])}; {imp2 - imp:+.1f} ms vs no plugins")

    print()
    print("for scale (issue 3):")
    detail(
        f"pipecat-ai-subagents: importing it takes {REF_PIPECAT_IMPORT_MS:g} ms here; "
        f"import framework {imp:.0f} ms (+{imp - floor:.0f} ms over the floor)"
    )
    detail(
        f"llm: llm --help grew from {REF_LLM_HELP_S:g} s to {REF_LLM_HELP_PLUGINS_S:g} s "
        f"with plugins ({REF_LLM_HELP_PLUGINS_S / REF_LLM_HELP_S:.1f}x);"
    )
    detail(
        f"     framework --help {help_ms:.0f} ms -> {help2:.0f} ms with {PLUGINS} plugins "
        f"({help2 / help_ms:.1f}x), framework plugins {plugins_ms:.0f} ms"
    )
    print()
    print(f"measured in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
