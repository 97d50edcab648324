"""The ONNX LSTM in torch: torch's fused kernel when the node is a plain LSTM, a step loop otherwise.

ONNX stacks the gates as input, output, forget, cell (``iofc``); torch as input, forget, cell, output. The
weights are re-ordered by slicing, so gradients flow back into the ONNX tensors exactly as they are stored.
The loop covers what torch's kernel does not: peepholes, ``clip``, ``input_forget``, Relu activations and
``sequence_lens`` shorter than the sequence (steps past a sample's length leave its state alone and output
zeros, and a reverse pass starts at each sample's own last step).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import onnx_ir as ir

from onnxcomp.torch_exec.registry import OpContext, Tensors, attr, op, optional
from onnxcomp.torch_exec.registry import torch_module as _torch

if TYPE_CHECKING:
    import torch

__all__: list[str] = []

_DEFAULT_ACTIVATIONS = ("Sigmoid", "Tanh", "Tanh")
_ACTIVATIONS = ("Sigmoid", "Tanh", "Relu")


def _lstm_check(node: ir.Node) -> str | None:
    names = attr(node, "activations") or []
    odd = sorted({name for name in names if name not in _ACTIVATIONS})
    return f"LSTM activation(s) {', '.join(odd)}" if odd else None


def _activation(name: str) -> Any:
    return {"Sigmoid": _torch().sigmoid, "Tanh": _torch().tanh, "Relu": _torch().relu}[name]


def _torch_order(gates: torch.Tensor, hidden: int) -> torch.Tensor:
    """ONNX ``iofc`` blocks along axis 0 as torch's ``ifco``."""
    i, o, f, c = (gates[k * hidden:(k + 1) * hidden] for k in range(4))
    return _torch().cat([i, f, c, o])


def _fused(data: torch.Tensor, w: torch.Tensor, r: torch.Tensor, bias: torch.Tensor, h0: torch.Tensor,
           c0: torch.Tensor, hidden: int, direction: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torch's LSTM kernel; a reverse-only LSTM runs forward over the time-reversed input."""
    params = []
    for d in range(w.shape[0]):
        params += [_torch_order(w[d], hidden), _torch_order(r[d], hidden),
                   _torch_order(bias[d, :4 * hidden], hidden), _torch_order(bias[d, 4 * hidden:], hidden)]
    source = data.flip(0) if direction == "reverse" else data
    out, h_n, c_n = _torch().lstm(source, (h0, c0), params, True, 1, 0.0, False, direction == "bidirectional",
                                  False)
    out = out.flip(0) if direction == "reverse" else out
    seq, batch = data.shape[:2]
    return out.reshape(seq, batch, w.shape[0], hidden).permute(0, 2, 1, 3), h_n, c_n


def _loop_direction(xw: torch.Tensor, r: torch.Tensor, h: torch.Tensor, c: torch.Tensor, peep: torch.Tensor | None,
                    lengths: torch.Tensor | None, reverse: bool, node: ir.Node,
                    acts: tuple[str, str, str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One direction, step by step; ``xw`` holds the input projections plus both biases, ``[seq, batch, 4H]``."""
    torch = _torch()
    f_act, g_act, h_act = (_activation(name) for name in acts)
    clip = attr(node, "clip")
    limit = (lambda t: t.clamp(-clip, clip)) if clip is not None else (lambda t: t)
    couple = bool(attr(node, "input_forget", 0))
    hidden = h.shape[-1]
    p_i, p_o, p_f = (peep[k * hidden:(k + 1) * hidden] for k in range(3)) if peep is not None else (None,) * 3
    steps = range(xw.shape[0] - 1, -1, -1) if reverse else range(xw.shape[0])
    outputs: list[Any] = [None] * xw.shape[0]
    for t in steps:
        i, o, f, cell = (xw[t] + h @ r.t()).chunk(4, dim=-1)
        if p_i is not None:
            i, f = i + p_i * c, f + p_f * c
        i = f_act(limit(i))
        f = 1 - i if couple else f_act(limit(f))
        c_new = f * c + i * g_act(limit(cell))
        o = f_act(limit(o + p_o * c_new if p_o is not None else o))
        h_new = o * h_act(c_new)
        if lengths is None:
            h, c, outputs[t] = h_new, c_new, h_new
        else:
            live = (t < lengths).unsqueeze(-1)
            h, c = torch.where(live, h_new, h), torch.where(live, c_new, c)
            outputs[t] = torch.where(live, h_new, torch.zeros_like(h_new))
    return torch.stack(outputs), h, c


def _plain(node: ir.Node, peep: Any, lengths: Any, seq: int) -> bool:
    activations = tuple(attr(node, "activations") or ())
    default = activations in ((), _DEFAULT_ACTIVATIONS, _DEFAULT_ACTIVATIONS * 2)
    full = lengths is None or bool((lengths == seq).all())
    return default and full and peep is None and attr(node, "clip") is None and not attr(node, "input_forget", 0)


@op("LSTM", check=_lstm_check)
def _lstm(ctx: OpContext, node: ir.Node, x: Tensors) -> list[torch.Tensor]:
    torch = _torch()
    data, w, r = x[0], x[1], x[2]
    bias, lengths, h0, c0, peep = (optional(x, k) for k in range(3, 8))
    layout = attr(node, "layout", 0)
    if layout:  # batch-major: [batch, seq, input] and states [batch, dirs, hidden]
        data = data.transpose(0, 1)
        h0, c0 = (None if s is None else s.transpose(0, 1) for s in (h0, c0))
    seq, batch = data.shape[:2]
    dirs, hidden = w.shape[0], r.shape[-1]
    direction = attr(node, "direction", "forward")
    zeros = data.new_zeros((dirs, batch, hidden))
    h0 = zeros if h0 is None else h0
    c0 = zeros if c0 is None else c0
    bias = data.new_zeros((dirs, 8 * hidden)) if bias is None else bias
    if _plain(node, peep, lengths, seq):
        y, h_n, c_n = _fused(data, w, r, bias, h0, c0, hidden, direction)
    else:
        acts = tuple(attr(node, "activations") or _DEFAULT_ACTIVATIONS * dirs)
        parts = []
        for d in range(dirs):
            xw = data @ w[d].t() + bias[d, :4 * hidden] + bias[d, 4 * hidden:]
            reverse = direction == "reverse" or d == 1
            parts.append(_loop_direction(xw, r[d], h0[d], c0[d], None if peep is None else peep[d],
                                         None if lengths is None else lengths.long(), reverse, node,
                                         acts[3 * d:3 * d + 3]))
        y = torch.stack([p[0] for p in parts], dim=1)
        h_n, c_n = torch.stack([p[1] for p in parts]), torch.stack([p[2] for p in parts])
    if layout:
        y, h_n, c_n = y.permute(2, 0, 1, 3), h_n.transpose(0, 1), c_n.transpose(0, 1)
    return [y, h_n, c_n]
