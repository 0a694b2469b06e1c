"""2-D transposed convolution ("deconvolution") with a hand-written backward."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Layer
from .conv import Conv2d, _pair

NAME = "ConvTranspose2d"  # in the argument checks' messages


class ConvTranspose2d(Layer):
    """y = conv_transpose2d(x, W) + b as in ``torch.nn.ConvTranspose2d``.

    Shapes: x (N, C_in, H, W), W (C_in, C_out/groups, kh, kw), b (C_out,),
    y (N, C_out, H_out, W_out) with H_out = (H - 1) s - 2p + d (kh - 1) + output_padding + 1.

    A transposed convolution is the input gradient of the convolution ``conv2d(., W)``
    from C_out to C_in channels with the same geometry (its adjoint), so its backward is
    that convolution run forwards, and its weight gradient that convolution's weight
    gradient with the roles of input and upstream gradient swapped:
      dx  = conv2d(dy, W), cut to x's size;
      dW[c, o, i, j] += sum_{n,p,q} x[n,c,p,q] dy[n,o,s p + d i - pad, s q + d j - pad]
            (``Conv2d._weight_grad`` with dy as its input and x as its upstream gradient);
    output_padding adds rows at the output's end: those the adjoint's windows do not reach
    carry no gradient; where it is at least the stride (it may be, below the dilation) the
    adjoint reaches positions past x's last row, which are no input (cut from dx, zeros in x
    for dW).
      db += sum_{n,y,x} dy.
    """

    _param_names = ("weight", "bias")

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, dilation=1, groups: int = 1, bias: bool = True,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        dtype = dtype or torch.get_default_dtype()
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"ConvTranspose2d: groups={groups} must divide in_channels={in_channels} "
                             f"and out_channels={out_channels}")
        geometry = [_pair(value, what, NAME) for value, what in
                    [(kernel_size, "kernel_size"), (stride, "stride"), (dilation, "dilation"), (padding, "padding")]]
        if min(sum(geometry[:3], ())) < 1 or min(geometry[3]) < 0:
            raise ValueError(f"ConvTranspose2d: kernel_size, stride and dilation must be >= 1 and padding >= 0, got "
                             + ", ".join(map(str, geometry)))
        # the adjoint convolution checks the geometry and computes the weight gradient; it
        # holds a weight of its own shape, never read: only its geometry is used
        self._adjoint = Conv2d(out_channels, in_channels, kernel_size, stride, padding, dilation, groups,
                               bias=False, dtype=dtype)
        self._adjoint.weight = None
        self.kernel_size, self.stride = self._adjoint.kernel_size, self._adjoint.stride
        self.padding, self.dilation = self._adjoint.padding, self._adjoint.dilation
        self.output_padding = _pair(output_padding, "output_padding", NAME)
        if any(not 0 <= op < max(s, d) for op, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise ValueError(f"ConvTranspose2d: output_padding must be >= 0 and smaller than the stride or the "
                             f"dilation, got {self.output_padding}")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.weight = torch.zeros(in_channels, out_channels // groups, *self.kernel_size, dtype=dtype)
        self.bias = torch.zeros(out_channels, dtype=dtype) if bias else None

    def __repr__(self) -> str:
        return (f"ConvTranspose2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, output_padding={self.output_padding}, "
                f"dilation={self.dilation}, groups={self.groups}, bias={self.bias is not None})")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return tuple(
            (size - 1) * s - 2 * p + d * (k - 1) + op + 1
            for size, s, p, d, k, op in zip((height, width), self.stride, self.padding, self.dilation,
                                            self.kernel_size, self.output_padding)
        )

    def forward(self, x: torch.Tensor, *, record: bool = True) -> torch.Tensor:
        self._check_tensor("input", x, (None, self.in_channels, None, None))
        if min(self.output_size(x.shape[2], x.shape[3])) < 1:
            raise ValueError(f"{self.name}: input of shape {tuple(x.shape)} gives an empty output")
        y = F.conv_transpose2d(x, self.weight, self.bias, self.stride, self.padding, self.output_padding,
                               self.groups, self.dilation)
        if record:
            self._records.append((x,))
        return y

    def backward(self, grad_out: torch.Tensor, *, input_grad: bool = True) -> torch.Tensor | None:
        """grad_out (N, C_out, H_out, W_out) -> grad_input (N, C_in, H, W) (None with
        ``input_grad=False``)."""
        self._check_tensor("upstream gradient", grad_out, (None, self.out_channels, None, None))
        records = self._pop_records(grad_out.shape[0], tuple(grad_out.shape))
        x = records[0][0] if len(records) == 1 else torch.cat([r[0] for r in records])
        height, width = x.shape[2:]
        expected = (x.shape[0], self.out_channels, *self.output_size(height, width))
        if tuple(grad_out.shape) != expected:
            raise ValueError(f"{self.name}: upstream gradient has shape {tuple(grad_out.shape)}, "
                             f"the output had {expected}")
        # the adjoint's output on dy is x's size, or larger where output_padding reaches past
        # its windows: x gets zeros there, which add nothing to the sum
        reach = self._adjoint.output_size(grad_out.shape[2], grad_out.shape[3])
        if reach != tuple(x.shape[2:]):
            x = F.pad(x, (0, reach[1] - x.shape[3], 0, reach[0] - x.shape[2]))
        self._accumulate(self.weight, self._adjoint._weight_grad(grad_out, x).contiguous())
        if self.bias is not None:
            self._accumulate(self.bias, grad_out.sum((0, 2, 3)))
        if not input_grad:
            return None
        grad_x = F.conv2d(grad_out, self.weight, None, self.stride, self.padding, self.dilation, self.groups)
        return grad_x[:, :, :height, :width]  # the positions past the input, if any, are none of it
