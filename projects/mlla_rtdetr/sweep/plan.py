"""Expanding a sweep (a grid or a list of config overrides) into concrete runs.

A sweep is one or more base configs times a set of axes. An axis is written in detectron2's
LazyConfig override syntax (the Hydra override grammar) with several values::

    model.encoder.attention=softmax,mlla     -> 2 values
    train.seed=range(0,3)                    -> 0, 1, 2
    model.decoder.num_queries=100,300

Each run gets its own output directory whose name lists the swept values, e.g.
``attention=mlla,seed=1`` (the Hydra multirun naming convention).

A list of runs (``--run`` / ``--runs-file``) may label its runs: in ``LABELS | OVERRIDES`` the
``key=value`` pairs left of ``|`` name the run (they are its table columns and directory name)
and the overrides right of it are what the run changes::

    placement=none       |
    placement=fusion     | model.encoder.fpn_fusion=mlla model.encoder.pan_fusion=mlla

A list can be combined with grid axes (e.g. seeds): every run of the list x every grid point.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ..config import config_path
from ..errors import ConfigError

CONFIG_AXIS = "config"
"""Name of the pseudo-axis over base config files when a sweep has more than one."""

_UNSAFE_CHARS = re.compile(r"[^A-Za-z0-9._+\-=,]")


@dataclass(frozen=True)
class Axis:
    """One swept config key and its values, each kept as override text (``"mlla"``, ``"0.1"``)."""

    key: str
    values: Tuple[str, ...]


@dataclass(frozen=True)
class LabeledRun:
    """One run of a list given as ``labels | overrides``: ``labels`` name it in tables and
    directory names, ``overrides`` are applied to the config."""

    labels: Tuple[Tuple[str, str], ...]
    overrides: Tuple[str, ...]


RunLine = Union[Sequence[str], LabeledRun]


@dataclass
class RunSpec:
    """One run of a sweep.

    Attributes:
        name: readable, unique directory name, e.g. ``"attention=mlla,seed=1"``.
        config_file: base config file of this run.
        overrides: all ``key=value`` overrides of this run (fixed ones first, then swept ones).
        swept: the swept values of this run, axis key -> value text, in axis order.
        output_dir: where the run writes everything (``train.output_dir``).
    """

    name: str
    config_file: str
    overrides: List[str]
    swept: Dict[str, str]
    output_dir: Path
    extra: Dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "config_file": self.config_file,
            "overrides": list(self.overrides),
            "swept": dict(self.swept),
            "output_dir": str(self.output_dir),
        }


def _override_parser():
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create()


def split_override(text: str) -> Tuple[str, str]:
    """``"a.b=1"`` -> ``("a.b", "1")``, with a clear error for text that is not an override."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w.]*", key):
        raise ConfigError(
            f"'{text}' is not a config override: expected 'dotted.key=value' "
            "(e.g. 'train.seed=0' or, to sweep, 'train.seed=0,1,2')."
        )
    return key, value.strip()


def parse_axis(text: str) -> Axis:
    """Parse ``key=v1,v2,...`` (or any Hydra sweep: ``range(0,3)``, ``[1,2],[3,4]``) into an Axis.

    A single value (``key=v``) is an axis of length one: it is applied to every run and does
    not appear in run names.
    """
    key, value = split_override(text)
    try:
        override = _override_parser().parse_overrides([text])[0]
    except Exception as e:  # hydra raises several exception types for grammar errors
        raise ConfigError(f"Cannot parse sweep axis '{text}': {e}") from e
    if override.is_sweep_override():
        values = tuple(str(v) for v in override.sweep_string_iterator())
    else:
        values = (value,)
    if not values:
        raise ConfigError(f"Sweep axis '{text}' has no values.")
    if len(set(values)) != len(values):
        raise ConfigError(f"Sweep axis '{text}' repeats a value: {list(values)}.")
    return Axis(key=key, values=values)


def short_keys(keys: Sequence[str]) -> Dict[str, str]:
    """Shortest unique dotted suffix of each key: ``model.encoder.attention`` -> ``attention``;
    ``a.lr`` and ``b.lr`` stay ``a.lr`` and ``b.lr``."""
    out = {}
    for key in keys:
        parts = key.split(".")
        for n in range(1, len(parts) + 1):
            suffix = ".".join(parts[-n:])
            clashes = [k for k in keys if k != key and (k == suffix or k.endswith("." + suffix))]
            if not clashes:
                out[key] = suffix
                break
        else:
            out[key] = key
    return out


def _safe(text: str) -> str:
    text = text.strip().strip("'\"")
    text = text.replace("/", "-").replace(" ", "")
    text = _UNSAFE_CHARS.sub("_", text)
    return text or "_"


def run_name(swept: Dict[str, str], names: Dict[str, str]) -> str:
    """Directory name of a run from its swept values, e.g. ``attention=mlla,seed=1``."""
    if not swept:
        return "run"
    parts = []
    for key, value in swept.items():
        if key == CONFIG_AXIS:
            value = Path(value).stem
        parts.append(f"{_safe(names.get(key, key))}={_safe(value)}")
    return ",".join(parts)


def _check_config_files(config_files: Sequence[str]) -> None:
    if not config_files:
        raise ConfigError("A sweep needs at least one base config (--config-file).")
    for cfg in config_files:
        config_path(cfg)  # a missing config is an error naming the closest ones
    if len(set(config_files)) != len(config_files):
        raise ConfigError(f"A base config is given twice: {list(config_files)}.")
    stems = [Path(c).stem for c in config_files]
    if len(set(stems)) != len(stems):
        raise ConfigError(
            f"Base configs must have distinct file names to name runs apart: {list(config_files)}."
        )


def _finish(
    config_files: Sequence[str],
    combos: Iterable[Tuple[str, List[str], Dict[str, str]]],
    output_root: Path,
) -> List[RunSpec]:
    combos = list(combos)
    keys: List[str] = []
    for _, _, swept in combos:
        for k in swept:
            if k not in keys:
                keys.append(k)
    names = short_keys([k for k in keys if k != CONFIG_AXIS])
    runs = []
    seen: Dict[str, RunSpec] = {}
    for cfg, overrides, swept in combos:
        name = run_name(swept, names)
        if name in seen:
            raise ConfigError(
                f"Two runs would share the output directory '{name}': {seen[name].swept} and "
                f"{swept}. Make the swept values distinct."
            )
        out = Path(output_root) / name
        # absolute: records stay valid whatever directory later tools run from
        spec = RunSpec(name=name, config_file=str(config_path(cfg)), overrides=overrides, swept=swept,
                       output_dir=out)
        seen[name] = spec
        runs.append(spec)
    return runs


def _check_axes(axes: Sequence[Axis], fixed: Sequence[str]) -> Tuple[List[Axis], List[str]]:
    """Validate grid axes against each other and the fixed overrides; returns (axes with several
    values, ``key=value`` overrides of the single-valued ones)."""
    for text in fixed:
        split_override(text)
    keys = [a.key for a in axes]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise ConfigError(f"Axis {dup} is given more than once; list all its values in one --set.")
    fixed_keys = {split_override(t)[0] for t in fixed}
    both = sorted(fixed_keys & set(keys))
    if both:
        raise ConfigError(f"Key {both} is both fixed and swept.")
    named = [a for a in axes if len(a.values) > 1]
    single = [f"{a.key}={a.values[0]}" for a in axes if len(a.values) == 1]
    return named, single


def expand_grid(
    config_files: Sequence[str],
    axes: Sequence[Axis],
    output_root: Path,
    fixed: Sequence[str] = (),
) -> List[RunSpec]:
    """Cartesian product of base configs and axes, in the order given (last axis varies fastest).

    Args:
        config_files: one or more base configs. With several, ``config`` becomes the first axis.
        axes: the swept keys; axes with a single value are applied to all runs but not named.
        output_root: parent directory of the run directories.
        fixed: extra ``key=value`` overrides applied to every run (before the swept ones).
    """
    _check_config_files(config_files)
    named, single = _check_axes(axes, fixed)

    def combos():
        for cfg in config_files:
            for values in itertools.product(*[a.values for a in named]):
                swept: Dict[str, str] = {}
                if len(config_files) > 1:
                    swept[CONFIG_AXIS] = str(cfg)
                swept.update({a.key: v for a, v in zip(named, values)})
                overrides = list(fixed) + single + [f"{a.key}={v}" for a, v in zip(named, values)]
                yield cfg, overrides, swept

    return _finish(config_files, combos(), output_root)


def expand_list(
    config_files: Sequence[str],
    runs: Sequence[RunLine],
    output_root: Path,
    fixed: Sequence[str] = (),
    axes: Sequence[Axis] = (),
) -> List[RunSpec]:
    """An explicit list of runs (each applied to each config), optionally times grid ``axes``.

    A run is a list of ``key=value`` overrides - the keys named by any run are the swept columns;
    a run that omits a key uses the config's value and shows ``-`` for it in tables - or a
    :class:`LabeledRun`, whose labels are its columns instead. With ``axes`` (e.g. seeds), every
    run of the list is combined with every grid point (the list varies slowest).
    """
    _check_config_files(config_files)
    if not runs:
        raise ConfigError("The run list is empty.")
    named, single = _check_axes(axes, fixed)
    axis_keys = {a.key for a in axes}
    parsed = []
    for run in runs:
        labels = dict(run.labels) if isinstance(run, LabeledRun) else {}
        overrides = list(run.overrides) if isinstance(run, LabeledRun) else list(run)
        pairs = [split_override(t) for t in overrides]
        ks = [k for k, _ in pairs]
        dup = sorted({k for k in ks if ks.count(k) > 1})
        if dup:
            raise ConfigError(f"Run {overrides} sets {dup} twice.")
        both = sorted(axis_keys & (set(ks) | set(labels)))
        if both:
            raise ConfigError(f"Run {overrides or labels} sets {both}, which is also a grid axis.")
        parsed.append((labels or dict(pairs), overrides))

    def combos():
        for cfg in config_files:
            for columns, overrides in parsed:
                for values in itertools.product(*[a.values for a in named]):
                    swept: Dict[str, str] = {}
                    if len(config_files) > 1:
                        swept[CONFIG_AXIS] = str(cfg)
                    swept.update(columns)
                    swept.update({a.key: v for a, v in zip(named, values)})
                    yield cfg, (list(fixed) + single + overrides
                                + [f"{a.key}={v}" for a, v in zip(named, values)]), swept

    return _finish(config_files, combos(), output_root)


def parse_run_line(line: str) -> RunLine:
    """One run of a list: ``k=v k2=v2`` (overrides) or ``label=x ... | k=v ...`` (labelled)."""
    import shlex

    if "|" not in line:
        return shlex.split(line)
    left, _, right = line.partition("|")
    labels = [split_override(t) for t in shlex.split(left)]
    if not labels:
        raise ConfigError(f"'{line.strip()}': nothing left of '|'; write the run's labels there (e.g. placement=none).")
    keys = [k for k, _ in labels]
    if len(set(keys)) != len(keys):
        raise ConfigError(f"'{line.strip()}' repeats a label key.")
    return LabeledRun(labels=tuple(labels), overrides=tuple(shlex.split(right)))


def load_run_list(path: str) -> List[RunLine]:
    """Read a run list file: one run per line (see :func:`parse_run_line`); ``#`` comments."""
    runs: List[RunLine] = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            runs.append(parse_run_line(line))
    return runs


def format_plan(runs: Sequence[RunSpec], commands: Optional[Sequence[Sequence[str]]] = None) -> str:
    """Human-readable plan: one block per run with its directory, overrides and command."""
    import shlex

    lines = [f"Sweep plan: {len(runs)} run(s)"]
    for i, run in enumerate(runs):
        lines.append(f"[{i + 1}/{len(runs)}] {run.name}")
        lines.append(f"    config:    {run.config_file}")
        lines.append(f"    output:    {run.output_dir}")
        lines.append(f"    overrides: {' '.join(run.overrides) if run.overrides else '(none)'}")
        if run.extra.get("status"):
            lines.append(f"    status:    {run.extra['status']}")
        if commands is not None:
            lines.append(f"    command:   {shlex.join(commands[i])}")
    return "\n".join(lines)
