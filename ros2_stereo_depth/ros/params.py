"""The one home of ROS parameter tables: declaration, type/range/choice checks, one-line errors.

Every node of the package (stereo_depth_node, its lifecycle variant, stereo_source) describes its
parameters as a table of `Param`s and calls `declare_parameters`. Values are checked here, at start-up
and on every `ros2 param set`, so a wrong value is refused with one line naming the parameter, the
value and what is allowed. An integer is accepted where a float is meant (`min_disparity: 0`, as
stereo_image_proc users write it): parameters are declared with dynamic typing and coerced here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult


@dataclass(frozen=True)
class Param:
    default: Any  # its type is the parameter's type (bool, int, float or str)
    description: str
    low: float | None = None  # inclusive range for int and float parameters
    high: float | None = None
    choices: tuple[str, ...] = ()
    read_only: bool = True  # most parameters only take effect at start-up

    def allowed(self) -> str:
        kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[type(self.default)]
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if self.low is not None:
            return f"{kind} in [{self.low:g}, {self.high:g}]"
        return kind


class ParameterError(ValueError):
    """A parameter value the node cannot use; the text is the whole one-line message."""


def check_value(name: str, spec: Param, value: Any) -> Any:
    """The value coerced to the parameter's type, or ParameterError naming name, value and what is allowed."""
    kind = type(spec.default)
    ok = False
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    else:
        ok = isinstance(value, str) and (not spec.choices or value in spec.choices)
    if ok and spec.low is not None:
        ok = spec.low <= value <= spec.high
    if not ok:
        raise ParameterError(f"parameter {name} = {value!r} is not allowed: use {spec.allowed()}")
    return value


def descriptor(name: str, spec: Param) -> ParameterDescriptor:
    # dynamic_typing: rclpy would refuse an integer for a float parameter before we could coerce it.
    return ParameterDescriptor(name=name, description=f"{spec.description} ({spec.allowed()})",
                               read_only=spec.read_only, dynamic_typing=True)


def declare_parameters(node: Any, table: Mapping[str, Param]) -> dict[str, Any]:
    """Declare every parameter of `table` on `node` and return the checked values by name.

    Run-time changes (`ros2 param set`) go through the same checks; the returned dict is updated in
    place when a change is accepted, so callers read current values from it."""
    values: dict[str, Any] = {}
    for name, spec in table.items():
        raw = node.declare_parameter(name, spec.default, descriptor(name, spec)).value
        values[name] = check_value(name, spec, raw)

    def on_set(parameters: list[Any]) -> SetParametersResult:
        checked = {}
        for parameter in parameters:
            if parameter.name in table:
                try:
                    checked[parameter.name] = check_value(parameter.name, table[parameter.name], parameter.value)
                except ParameterError as error:
                    return SetParametersResult(successful=False, reason=str(error))
        values.update(checked)
        return SetParametersResult(successful=True)

    node.add_on_set_parameters_callback(on_set)
    return values


def read_params_file(path: str | Path, table: Mapping[str, Param]) -> dict[str, Any]:
    """The checked values of a ROS 2 parameters file (`/**:` or a node name, then `ros__parameters:`) for a
    node whose parameters are `table`: what `--ros-args --params-file` would set, for the tools that run the
    node's processing without rclpy (the bench's presets). ParameterError names the file and the problem."""
    import yaml

    try:
        document = yaml.safe_load(Path(path).read_text())
        sections = [v["ros__parameters"] for v in document.values() if isinstance(v, dict) and "ros__parameters" in v]
    except (OSError, yaml.YAMLError, AttributeError) as error:
        raise ParameterError(f"{path}: not a readable ROS 2 parameters file ({error})") from None
    if len(sections) != 1 or not isinstance(sections[0], dict):
        raise ParameterError(f"{path}: expected one `ros__parameters` section, found {len(sections)}")
    unknown = sorted(set(sections[0]) - set(table))
    if unknown:
        raise ParameterError(f"{path}: unknown parameter(s) {', '.join(unknown)}")
    try:
        return {name: check_value(name, table[name], value) for name, value in sections[0].items()}
    except ParameterError as error:
        raise ParameterError(f"{path}: {error}") from None
