"""deploy/: the systemd unit and the sample config, checked against the code they describe."""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from lite_csms import config
from lite_csms.cli.main import build_parser
from tests.conftest import REPO

UNIT = REPO / "deploy" / "lite-csms.service"
SAMPLE = REPO / "deploy" / "lite-csms.toml"
# Where the unit's header installs the sample.
INSTALLED_SAMPLE = "/etc/lite-csms/lite-csms.toml"
# Settings fields that are bookkeeping, not settings an operator writes.
INTERNAL = {"explicit", "extra"}
# A setting line of the sample: `#name = value`, commented out so it stays a default.
SETTING = re.compile(r"^#([a-z][a-z0-9_]*) = (.+)$")


def settings_names() -> list[str]:
    # From the dataclass itself: a setting added to config.py is checked here at once.
    return [f.name for f in dataclasses.fields(config.Settings) if f.name not in INTERNAL]


def sample_lines() -> list[tuple[int, str, str]]:
    return [(number, match[1], match[2])
            for number, line in enumerate(SAMPLE.read_text().splitlines())
            if (match := SETTING.match(line))]


def test_sample_config_names_every_setting_exactly_once() -> None:
    written = [name for _, name, _ in sample_lines()]
    missing = sorted(set(settings_names()) - set(written))
    assert not missing, (f"{SAMPLE.name} does not document {', '.join(missing)}: add each as "
                         f"'#name = default' under a comment saying what it does and its unit")
    twice = sorted({name for name in written if written.count(name) > 1})
    assert not twice, f"{SAMPLE.name} names {', '.join(twice)} more than once"
    unknown = sorted(set(written) - set(settings_names()))
    assert not unknown, f"{SAMPLE.name} names settings config.py does not have: {unknown}"


def test_every_sample_setting_has_a_comment_above_it() -> None:
    lines = SAMPLE.read_text().splitlines()
    for number, name, _ in sample_lines():
        above = number - 1
        while above >= 0 and SETTING.match(lines[above]):
            above -= 1  # settings of one comment (the keepalive trio) share it
        assert above >= 0 and lines[above].startswith("# ") and len(lines[above]) > 10, (
            f"{SAMPLE.name}: {name} has no comment above it")


def test_sample_values_are_the_defaults(tmp_path: Path) -> None:
    defaults = config.load(environ={})
    # As shipped, everything is commented out: the defaults, none of them explicit.
    shipped = config.load(SAMPLE, environ={})
    assert shipped == defaults and shipped.explicit == frozenset()
    # Every line uncommented, through the real loader: the same values, so the sample never
    # lies about a default.
    uncommented = tmp_path / "uncommented.toml"
    uncommented.write_text("".join(f"{name} = {value}\n" for _, name, value in sample_lines()))
    loaded = config.load(uncommented, environ={})
    differing = {name: (getattr(loaded, name), getattr(defaults, name))
                 for name in settings_names() if getattr(loaded, name) != getattr(defaults, name)}
    assert not differing, f"{SAMPLE.name} gives (sample, default): {differing}"
    assert loaded.explicit == frozenset(settings_names())
    # The value types are the defaults' too (300, not 300.0, for an integer setting).
    raw = tomllib.loads(uncommented.read_text())
    for name, value in raw.items():
        default = getattr(defaults, name)
        assert isinstance(value, list if isinstance(default, tuple) else type(default)), name


def unit_entries() -> dict[str, dict[str, list[str]]]:
    """The unit as sections of keys, each with all its values (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def test_unit_starts_the_console_script_with_the_sample_config() -> None:
    service = unit_entries()["Service"]
    command = shlex.split(service["ExecStart"][0])
    program = Path(command[0])
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert program.name in scripts and program.is_absolute()
    # The arguments are ones the real CLI accepts, naming the installed sample.
    args = build_parser().parse_args(command[1:])
    assert args.command == "serve" and args.config == INSTALLED_SAMPLE
    assert INSTALLED_SAMPLE in SAMPLE.read_text()
    # The database lands in the StateDirectory, where the root CLI looks by default too.
    state = "/var/lib/" + service["StateDirectory"][0]
    assert config.default_database({"STATE_DIRECTORY": state}) == (
        config.default_database({}, euid=0))


def test_unit_is_hardened_for_a_small_vps() -> None:
    service = unit_entries()["Service"]
    one = {key: values[-1] for key, values in service.items()}
    expected = {
        "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
        "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes",
        "ProtectControlGroups": "yes", "Restart": "on-failure", "UMask": "0077",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX", "CapabilityBoundingSet": "",
    }
    assert {key: one.get(key) for key in expected} == expected
    assert one.get("User") or one.get("DynamicUser") == "yes"
    assert one.get("User") != "root"

    def megabytes(size: str) -> float:
        number, unit = re.fullmatch(r"(\d+)([KMG]?)", size).groups()  # type: ignore[union-attr]
        return int(number) * {"K": 1 / 1024, "M": 1, "G": 1024, "": 1 / 2**20}[unit]

    # Room for the system on a 512 MB VPS; reclaim starts before the kill.
    assert megabytes(one["MemoryHigh"]) < megabytes(one["MemoryMax"]) <= 448
    # One descriptor per station: well above the 5,000 reconnecting stations.
    assert int(one["LimitNOFILE"]) >= 16384


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
def test_systemd_analyze_verifies_the_unit(tmp_path: Path) -> None:
    # The same unit, with ExecStart pointing at this environment's console script (verify
    # checks that the program exists and is executable).
    script = Path(sys.executable).parent / "lite-csms"
    assert script.is_file()
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace("/opt/lite-csms/bin/lite-csms", str(script)))
    verified = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                              text=True, timeout=60)
    # Unknown or misspelt keys are only warnings to systemd: any output fails here.
    assert verified.returncode == 0 and not verified.stderr.strip(), verified.stderr
    assert not verified.stdout.strip(), verified.stdout
    # systemd's own exposure score (0 best, 10 worst): 2.5 and under is "OK".
    scored = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--threshold=25",
                             str(unit)], capture_output=True, text=True, timeout=60)
    assert scored.returncode == 0, scored.stdout[-2000:]
