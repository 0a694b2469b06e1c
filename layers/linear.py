"""Fully connected layer with a hand-written backward."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Layer


class Linear(Layer):
    """y = x W^T + b, x (N, in), W (out, in), b (out,), y (N, out).

    Backward: dx = dy W,  dW += dy^T x,  db += sum_n dy.
    """

    _param_names = ("weight", "bias")

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        dtype = dtype or torch.get_default_dtype()  # None follows torch.set_default_dtype, as torch.nn
        if in_features < 1 or out_features < 1:
            raise ValueError(f"Linear: feature counts must be positive, got {in_features}, {out_features}")
        self.in_features, self.out_features = in_features, out_features
        self.weight = torch.zeros(out_features, in_features, dtype=dtype)
        self.bias = torch.zeros(out_features, dtype=dtype) if bias else None

    def __repr__(self) -> str:
        return f"Linear({self.in_features}, {self.out_features}, bias={self.bias is not None})"

    def forward(self, x: torch.Tensor, *, record: bool = True) -> torch.Tensor:
        self._check_tensor("input", x, (None, self.in_features))
        if record:
            self._records.append((x,))
        return F.linear(x, self.weight, self.bias)

    def backward(self, grad_out: torch.Tensor) -> torch.Tensor:
        """grad_out (N, out) -> grad_input (N, in); N may cover several forward calls."""
        self._check_tensor("upstream gradient", grad_out, (None, self.out_features))
        records = self._pop_records(grad_out.shape[0], tuple(grad_out.shape))
        x = records[0][0] if len(records) == 1 else torch.cat([r[0] for r in records])
        self._accumulate(self.weight, grad_out.t() @ x)
        if self.bias is not None:
            self._accumulate(self.bias, grad_out.sum(0))
        return grad_out @ self.weight
