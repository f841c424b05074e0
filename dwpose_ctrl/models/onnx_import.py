"""Import the weights of an exported ONNX file (BatchNorm fused into its convolutions) into our modules.

Exports lose parameter names (fused conv weights become ``onnx::Conv_123``), so weights are matched
by *execution order with shape checks*:

- every ONNX ``Conv`` with constant weights, in graph order, to every ``nn.Conv2d`` in the order the
  PyTorch forward runs them. When the PyTorch conv is followed by a BatchNorm, the fused weight
  goes to the conv and the fused bias to an identity BatchNorm (mean 0, variance 1, weight
  ``sqrt(1 + eps)``), so the model keeps its mmpose/YOLOX parameter names and can be saved or
  re-exported (not trained: the BatchNorm statistics are gone);
- every ``MatMul``/``Gemm`` with a constant weight to every ``nn.Linear`` in execution order;
- the element-wise parameters of the RTMCC head (ScaleNorm ``g``, GAU ``gamma``/``beta``,
  ``res_scale``) to the ``Mul``/``Add`` nodes with a constant operand of the same shape, in order
  (``Mul`` nodes that scale a norm, ``||x|| * d^-0.5``, are not parameters and are skipped; a
  parameter whose op an optimiser removed as a no-op, ``x * 1`` or ``x + 0``, gets that value).

When the torch exporter's scope names are in the node names (``/backbone/stage1/stage1.1/...``)
and every weight resolves through them, they are used instead of the order, which makes graphs
re-ordered by an optimiser (onnxruntime's offline optimisation, onnxsim) import as well.

Graphs exported without constant folding are handled too: a ``BatchNormalization`` after a
``Conv`` is folded into it, and constants passed through ``Identity``/``Cast``/``Transpose``/
``Unsqueeze``/``Reshape`` are followed.

Every tensor of the model must be matched exactly once, or a ``ValueError`` says what is missing.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dwpose_ctrl.files import check_regular_file
from dwpose_ctrl.models.checkpoints import rtmpose_stem_channels, yolox_stem_channels
from dwpose_ctrl.models.rtmcc_head import GatedAttentionUnit, Scale, ScaleNorm
from dwpose_ctrl.models.rtmpose import RTMPose, build_rtmpose
from dwpose_ctrl.models.yolox import YOLOX, YOLOX_SIZES, build_yolox
from dwpose_ctrl.weights import check_pose_input_size, load_onnx_file

NORM_PRODUCERS = frozenset({"ReduceL2", "Sqrt", "Pow", "ReduceSumSquare", "ReduceSum"})


@dataclass(frozen=True)
class OnnxConv:
    node: str
    weight: np.ndarray
    bias: np.ndarray | None
    groups: int


@dataclass(frozen=True)
class OnnxLinear:
    node: str
    weight: np.ndarray  # (out, in), as nn.Linear stores it
    bias: np.ndarray | None
    output_index: int | None  # position among the graph outputs when it produces one


@dataclass(frozen=True)
class OnnxConstantOp:
    node: str
    op: str
    value: np.ndarray


@dataclass(frozen=True)
class OnnxWeights:
    """The weight-carrying operations of an ONNX graph, in graph order, and its declared I/O."""

    convs: list[OnnxConv]
    linears: list[OnnxLinear]
    constant_ops: list[OnnxConstantOp]
    input_shape: list[int | str | None]
    output_shapes: list[list[int | str | None]]


def _dims(value_info) -> list[int | str | None]:
    dims: list[int | str | None] = []
    for dim in value_info.type.tensor_type.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        else:
            dims.append(dim.dim_param or None)
    return dims


def read_onnx_weights(path: str | os.PathLike) -> OnnxWeights:
    """Parse an ONNX file into the operations :func:`load_onnx_weights` matches against."""
    import onnx
    from onnx import numpy_helper

    path = Path(path)
    check_regular_file(path, "ONNX file")
    graph = load_onnx_file(path).graph

    def attr(node, name, default):
        for attribute in node.attribute:
            if attribute.name == name:
                return onnx.helper.get_attribute_value(attribute)
        return default

    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producers: dict[str, str] = {}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attribute.t)
        else:
            folded = _fold_constant(node, constants, attr)
            if folded is not None:
                constants[node.output[0]] = folded
        for output in node.output:
            producers[output] = node.op_type

    graph_outputs = [output.name for output in graph.output]

    def output_index(node) -> int | None:
        return graph_outputs.index(node.output[0]) if node.output[0] in graph_outputs else None

    convs: list[OnnxConv] = []
    conv_by_output: dict[str, int] = {}
    linears: list[OnnxLinear] = []
    constant_ops: list[OnnxConstantOp] = []
    for node in graph.node:
        inputs = list(node.input)
        if node.op_type == "Conv" and len(inputs) > 1 and inputs[1] in constants:
            bias = constants.get(inputs[2]) if len(inputs) > 2 and inputs[2] else None
            conv_by_output[node.output[0]] = len(convs)
            convs.append(OnnxConv(node.name, constants[inputs[1]], bias, int(attr(node, "group", 1))))
        elif (
            node.op_type == "BatchNormalization"
            and inputs[0] in conv_by_output
            and all(name in constants for name in inputs[1:5])
        ):
            index = conv_by_output[inputs[0]]
            statistics = [constants[name] for name in inputs[1:5]]
            convs[index] = _fold_batchnorm(convs[index], *statistics, float(attr(node, "epsilon", 1e-5)))
        elif node.op_type == "MatMul" and inputs[1] in constants and constants[inputs[1]].ndim == 2:
            linears.append(OnnxLinear(node.name, constants[inputs[1]].T, None, output_index(node)))
        elif node.op_type == "Gemm" and inputs[1] in constants:
            weight = constants[inputs[1]]
            if not attr(node, "transB", 0):
                weight = weight.T
            bias = constants.get(inputs[2]) if len(inputs) > 2 and inputs[2] else None
            linears.append(OnnxLinear(node.name, weight, bias, output_index(node)))
        elif node.op_type in ("Mul", "Add") and len(inputs) == 2:
            constant_inputs = [name for name in inputs if name in constants]
            if len(constant_inputs) != 1:
                continue
            value = constants[constant_inputs[0]]
            variable = inputs[1] if constant_inputs[0] == inputs[0] else inputs[0]
            if value.ndim == 0 or not np.issubdtype(value.dtype, np.floating):
                continue
            if node.op_type == "Mul" and producers.get(variable) in NORM_PRODUCERS:
                continue
            constant_ops.append(OnnxConstantOp(node.name, node.op_type, value))
    # Linears that produce graph outputs (cls_x, cls_y) may be listed in either order by an optimiser:
    # put them back in output order.
    positions = [index for index, linear in enumerate(linears) if linear.output_index is not None]
    by_output = sorted((linears[index] for index in positions), key=lambda linear: linear.output_index)
    for index, linear in zip(positions, by_output, strict=True):
        linears[index] = linear
    outputs = [_dims(output) for output in graph.output]
    return OnnxWeights(convs, linears, constant_ops, _dims(graph.input[0]), outputs)


def _fold_constant(node, constants: dict[str, np.ndarray], attr) -> np.ndarray | None:
    """The value of a shape-only op applied to a constant (weights exported without constant folding)."""
    import onnx

    values = [constants.get(name) if name else None for name in node.input]
    if not values or values[0] is None:
        return None
    value = values[0]
    if node.op_type == "Identity":
        return value
    if node.op_type == "Cast":
        return value.astype(onnx.helper.tensor_dtype_to_np_dtype(attr(node, "to", onnx.TensorProto.FLOAT)))
    if node.op_type == "Transpose":
        return np.transpose(value, attr(node, "perm", None))
    if node.op_type == "Unsqueeze":
        axes = attr(node, "axes", None)
        if axes is None and len(values) > 1 and values[1] is not None:
            axes = values[1].tolist()
        return None if axes is None else np.expand_dims(value, tuple(int(axis) for axis in axes))
    if node.op_type == "Reshape" and len(values) > 1 and values[1] is not None:
        shape = [value.shape[i] if size == 0 else int(size) for i, size in enumerate(values[1].tolist())]
        return value.reshape(shape)
    return None


def _fold_batchnorm(
    conv: OnnxConv,
    scale: np.ndarray,
    shift: np.ndarray,
    mean: np.ndarray,
    variance: np.ndarray,
    eps: float,
) -> OnnxConv:
    """A Conv followed by an inference BatchNormalization, as one conv (float64 arithmetic)."""
    factor = scale.astype(np.float64) / np.sqrt(variance.astype(np.float64) + eps)
    bias = conv.bias.astype(np.float64) if conv.bias is not None else np.zeros_like(factor)
    weight = conv.weight.astype(np.float64) * factor.reshape(-1, *([1] * (conv.weight.ndim - 1)))
    folded_bias = (bias - mean) * factor + shift
    return OnnxConv(conv.node, weight.astype(np.float32), folded_bias.astype(np.float32), conv.groups)


def _skeleton(model: RTMPose | YOLOX) -> RTMPose | YOLOX:
    """The same architecture on the meta device (no memory, no compute)."""
    with torch.device("meta"):
        if isinstance(model, RTMPose):
            return build_rtmpose(model.size, model.input_size, model.num_keypoints)
        return build_yolox(model.size, model.num_classes)


def _execution_order(model: RTMPose | YOLOX, input_shape: tuple[int, ...]) -> list[tuple[str, nn.Module]]:
    """Modules that hold weights, in the order a forward pass enters them.

    The pass runs on a meta-device copy, so it costs nothing; names map back to ``model``.
    """
    skeleton = _skeleton(model).eval()
    names = {module: name for name, module in skeleton.named_modules()}
    kinds = (nn.Conv2d, nn.Linear, ScaleNorm, Scale, GatedAttentionUnit)
    entered: list[str] = []
    for module in skeleton.modules():
        if isinstance(module, kinds):
            module.register_forward_pre_hook(lambda module, _args: entered.append(names[module]))
    with torch.no_grad():
        skeleton(torch.zeros(input_shape, device="meta"))
    return [(name, model.get_submodule(name)) for name in entered]


def _fits(value: np.ndarray, shape: torch.Size) -> bool:
    """True when ``value`` is ``shape`` with extra leading 1-dims (as folded broadcasts leave it)."""
    dims = list(value.shape)
    while len(dims) > len(shape) and dims[0] == 1:
        dims.pop(0)
    return tuple(dims) == tuple(shape)


def _copy(target: torch.Tensor, value: np.ndarray | torch.Tensor, where: str) -> None:
    tensor = torch.tensor(np.asarray(value, dtype=np.float32)).reshape(target.shape)
    if not torch.isfinite(tensor).all():
        raise ValueError(f"{where}: the ONNX weights contain non-finite values")
    target.copy_(tensor)


def _assign_conv(model: nn.Module, name: str, conv: nn.Conv2d, source: OnnxConv, assigned: set[str]) -> None:
    if tuple(source.weight.shape) != tuple(conv.weight.shape) or source.groups != conv.groups:
        raise ValueError(
            f"ONNX conv {source.node!r} (weight {tuple(source.weight.shape)}, groups {source.groups}) "
            f"does not fit {name} (weight {tuple(conv.weight.shape)}, groups {conv.groups}): "
            "the file is not this architecture or size"
        )
    _copy(conv.weight, source.weight, name)
    assigned.add(f"{name}.weight")
    bias = source.bias if source.bias is not None else np.zeros(conv.out_channels, np.float32)
    parent_name, _, attribute = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    batch_norm = getattr(parent, "bn", None) if attribute == "conv" else None
    if isinstance(batch_norm, nn.BatchNorm2d):
        _copy(batch_norm.running_mean, np.zeros(conv.out_channels), name)
        _copy(batch_norm.running_var, np.ones(conv.out_channels), name)
        _copy(batch_norm.weight, np.full(conv.out_channels, math.sqrt(1.0 + batch_norm.eps)), name)
        _copy(batch_norm.bias, bias, name)
        batch_norm.num_batches_tracked.zero_()
        prefix = f"{parent_name}.bn"
        assigned.update(f"{prefix}.{key}" for key in ("weight", "bias", "running_mean", "running_var"))
        assigned.add(f"{prefix}.num_batches_tracked")
    elif conv.bias is not None:
        _copy(conv.bias, bias, name)
        assigned.add(f"{name}.bias")
    elif np.any(bias != 0):
        raise ValueError(f"ONNX conv {source.node!r} has a bias but {name} has neither bias nor BatchNorm")


def _assign_linear(name: str, linear: nn.Linear, source: OnnxLinear, assigned: set[str]) -> None:
    if tuple(source.weight.shape) != tuple(linear.weight.shape):
        raise ValueError(
            f"ONNX {source.node!r} (weight {tuple(source.weight.shape)} as out x in) does not fit {name} "
            f"({tuple(linear.weight.shape)}): the file is not this architecture, size or input size"
        )
    _copy(linear.weight, source.weight, name)
    assigned.add(f"{name}.weight")
    if linear.bias is not None:
        _copy(linear.bias, source.bias if source.bias is not None else np.zeros(linear.out_features), name)
        assigned.add(f"{name}.bias")
    elif source.bias is not None and np.any(source.bias != 0):
        raise ValueError(f"ONNX {source.node!r} has a bias but {name} has none")


def _elementwise_parameters(model: nn.Module) -> dict[str, tuple[str, nn.Parameter]]:
    """Parameters applied by an element-wise ONNX op: full name -> (op type, parameter)."""
    found: dict[str, tuple[str, nn.Parameter]] = {}
    for name, module in model.named_modules():
        if isinstance(module, ScaleNorm):
            found[f"{name}.g"] = ("Mul", module.g)
        elif isinstance(module, Scale):
            found[f"{name}.scale"] = ("Mul", module.scale)
        elif isinstance(module, GatedAttentionUnit):
            found[f"{name}.gamma"] = ("Mul", module.gamma)
            found[f"{name}.beta"] = ("Add", module.beta)
    return found


def _identity_value(op: str, parameter: nn.Parameter) -> np.ndarray:
    """The value of a parameter whose op an optimiser removed as a no-op (x * 1 or x + 0)."""
    return np.full(tuple(parameter.shape), 1.0 if op == "Mul" else 0.0, np.float32)


@dataclass
class _Plan:
    """Which ONNX operation feeds which module or parameter."""

    convs: list[tuple[str, OnnxConv]]
    linears: list[tuple[str, OnnxLinear]]
    elementwise: list[tuple[str, np.ndarray]]


def _module_path(node_name: str) -> str | None:
    """Module path from a torch exporter scope name (``/backbone/stage1/stage1.1/main_conv/conv/Conv``)."""
    if not node_name.startswith("/"):
        return None
    path: list[str] = []
    for component in node_name.strip("/").split("/")[:-1]:
        if path and component.startswith(path[-1] + "."):
            path[-1] = component
        else:
            path.append(component)
    return ".".join(path)


def _plan_by_names(model: nn.Module, weights: OnnxWeights) -> _Plan | None:
    """Match by the module scopes in node names; None unless every weight matches exactly once."""
    modules = dict(model.named_modules())
    plan = _Plan([], [], [])
    for kind, sources, target in (
        (nn.Conv2d, weights.convs, plan.convs),
        (nn.Linear, weights.linears, plan.linears),
    ):
        for source in sources:
            path = _module_path(source.node)
            module = modules.get(path) if path is not None else None
            if not isinstance(module, kind) or tuple(module.weight.shape) != tuple(source.weight.shape):
                return None
            if isinstance(module, nn.Conv2d) and module.groups != source.groups:
                return None
            target.append((path, source))
    parameters = _elementwise_parameters(model)
    for op in weights.constant_ops:
        path = _module_path(op.node)
        module = modules.get(path) if path is not None else None
        if isinstance(module, ScaleNorm) and op.op == "Mul":
            name = f"{path}.g"
        elif isinstance(module, Scale) and op.op == "Mul":
            name = f"{path}.scale"
        elif isinstance(module, GatedAttentionUnit):
            name = f"{path}.gamma" if op.op == "Mul" else f"{path}.beta"
        else:
            return None
        if not _fits(op.value, parameters[name][1].shape):
            return None
        plan.elementwise.append((name, op.value))
    matched = {name for name, _ in plan.elementwise}
    plan.elementwise.extend(
        (name, _identity_value(op, parameter))
        for name, (op, parameter) in parameters.items()
        if name not in matched
    )
    expected_convs = {name for name, module in modules.items() if isinstance(module, nn.Conv2d)}
    expected_linears = {name for name, module in modules.items() if isinstance(module, nn.Linear)}
    complete = (
        sorted(name for name, _ in plan.convs) == sorted(expected_convs)
        and sorted(name for name, _ in plan.linears) == sorted(expected_linears)
        and sorted(name for name, _ in plan.elementwise) == sorted(parameters)
    )
    return plan if complete else None


def _plan_by_order(
    model: RTMPose | YOLOX, weights: OnnxWeights, input_shape: tuple[int, ...], file: str
) -> _Plan:
    """Match in execution order, by kind (conv, linear, element-wise op and shape)."""
    order = _execution_order(model, input_shape)
    conv_slots = [name for name, module in order if isinstance(module, nn.Conv2d)]
    linear_slots = [name for name, module in order if isinstance(module, nn.Linear)]
    for kind, slots, sources in (
        ("Conv", conv_slots, weights.convs),
        ("MatMul/Gemm", linear_slots, weights.linears),
    ):
        if len(slots) != len(sources):
            raise ValueError(
                f"{file} has {len(sources)} {kind} operations with constant weights but the "
                f"{type(model).__name__} has {len(slots)}: the file is a different architecture or size"
            )
    parameters = _elementwise_parameters(model)
    entered = [name for name, _ in order]
    slots = sorted(parameters, key=lambda name: entered.index(name.rpartition(".")[0]))
    elementwise: list[tuple[str, np.ndarray]] = []
    for name in slots:
        op, parameter = parameters[name]
        same_kind = [
            other
            for other in slots
            if parameters[other][0] == op and parameters[other][1].shape == parameter.shape
        ]
        candidates = [c for c in weights.constant_ops if c.op == op and _fits(c.value, parameter.shape)]
        if not candidates:
            elementwise.append((name, _identity_value(op, parameter)))
            continue
        if len(candidates) != len(same_kind):
            raise ValueError(
                f"{file}: found {len(candidates)} {op} constants of shape {tuple(parameter.shape)} for "
                f"{len(same_kind)} parameters ({name} among them); cannot match them unambiguously"
            )
        elementwise.append((name, candidates[same_kind.index(name)].value))
    return _Plan(
        list(zip(conv_slots, weights.convs, strict=True)),
        list(zip(linear_slots, weights.linears, strict=True)),
        elementwise,
    )


def load_onnx_weights(model: nn.Module, onnx_path: str | os.PathLike) -> nn.Module:
    """Copy the weights of an exported ONNX file into ``model`` (an RTMPose or YOLOX of the same size).

    Operations are matched by the module scopes the torch exporter writes into node names when
    every one of them resolves, else by execution order (see the module docstring). Returns the
    model in eval mode. Raises ``ValueError`` naming the first operation that does not fit, or the
    parameters left without a source.
    """
    if not isinstance(model, (RTMPose, YOLOX)):
        raise TypeError(f"load_onnx_weights expects an RTMPose or YOLOX model, got {type(model).__name__}")
    file = Path(onnx_path).name
    weights = read_onnx_weights(onnx_path)
    if isinstance(model, RTMPose):
        height, width = model.input_size
        declared = weights.input_shape[2:]
        if all(isinstance(side, int) for side in declared) and tuple(declared) != (height, width):
            raise ValueError(
                f"{file} takes {declared[0]}x{declared[1]} inputs but the model was built for "
                f"{height}x{width}; build it with input_size={tuple(declared)}"
            )
    else:
        height = width = 64
    plan = _plan_by_names(model, weights) or _plan_by_order(model, weights, (1, 3, height, width), file)
    parameters = _elementwise_parameters(model)
    assigned: set[str] = set()
    with torch.no_grad():
        for name, source in plan.convs:
            _assign_conv(model, name, model.get_submodule(name), source, assigned)
        for name, source in plan.linears:
            _assign_linear(name, model.get_submodule(name), source, assigned)
        for name, value in plan.elementwise:
            _copy(parameters[name][1], value, name)
            assigned.add(name)
    missing = [key for key in model.state_dict() if key not in assigned]
    if missing:
        raise ValueError(f"{file} gave no value for {len(missing)} tensors: {missing[:5]}")
    return model.eval()


def read_onnx_input_size(path: str | os.PathLike) -> tuple[int, int] | None:
    """The (height, width) the ONNX model declares, or None when either side is symbolic."""
    declared = read_onnx_weights(path).input_shape[2:]
    if len(declared) == 2 and all(isinstance(side, int) for side in declared):
        return int(declared[0]), int(declared[1])
    return None


def build_from_onnx(path: str | os.PathLike) -> RTMPose | YOLOX:
    """Build the RTMPose or YOLOX network an exported ONNX file describes and import its weights.

    RTMPose files have two outputs (``simcc_x``, ``simcc_y``), YOLOX files one. The size comes from
    the stem width, the RTMPose input size from the ``cls_x``/``cls_y`` weights.
    """
    weights = read_onnx_weights(path)
    if len(weights.convs) < 3:
        raise ValueError(f"{Path(path).name} has too few convolutions to be an RTMPose or YOLOX export")
    if len(weights.output_shapes) == 2:
        stems = rtmpose_stem_channels()
        channels = weights.convs[2].weight.shape[0]
        size = next((name for name, width in stems.items() if width == channels), None)
        if size is None or len(weights.linears) < 2:
            raise ValueError(
                f"{Path(path).name} does not look like an RTMPose export (stem width {channels})"
            )
        declared = weights.input_shape[2:]
        if len(declared) == 2 and all(isinstance(side, int) for side in declared):
            height, width = int(declared[0]), int(declared[1])
        else:
            width = weights.linears[-2].weight.shape[0] // 2
            height = weights.linears[-1].weight.shape[0] // 2
        check_pose_input_size(Path(path).name, (height, width))
        num_keypoints = weights.convs[-1].weight.shape[0]
        model: RTMPose | YOLOX = build_rtmpose(size, (height, width), num_keypoints)
    elif len(weights.output_shapes) == 1:
        stems = yolox_stem_channels()
        channels = weights.convs[0].weight.shape[0]
        size = next((name for name, width in stems.items() if width == channels), None)
        if size is None:
            raise ValueError(f"{Path(path).name} does not look like a YOLOX export (stem width {channels})")
        declared_channels = weights.output_shapes[0][-1] if weights.output_shapes[0] else None
        if isinstance(declared_channels, int) and declared_channels > 5:
            num_classes = declared_channels - 5
        else:  # the last level's cls_pred: before reg_convs, reg_pred and obj_pred
            convs_per_branch = 4 if YOLOX_SIZES[size].depthwise else 2
            num_classes = weights.convs[-(3 + convs_per_branch)].weight.shape[0]
        model = build_yolox(size, num_classes)
    else:
        raise ValueError(
            f"{Path(path).name} has {len(weights.output_shapes)} outputs; expected 2 (RTMPose) or 1 (YOLOX)"
        )
    return load_onnx_weights(model, path)
