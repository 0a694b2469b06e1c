"""2-D convolution with a hand-written backward."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Layer


def _pair(value, what: str, layer: str = "Conv2d") -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) for v in pair):
        raise ValueError(f"{layer}: {what} must be an int or a pair of ints, got {value!r}")
    return pair


class Conv2d(Layer):
    """y = conv2d(x, W) + b as in ``torch.nn.Conv2d``.

    Shapes: x (N, C_in, H, W), W (C_out, C_in/groups, kh, kw), b (C_out,),
    y (N, C_out, H_out, W_out) with H_out = (H + 2p - d(kh-1) - 1) // s + 1.

    Backward:
      dx  = conv_transpose2d(dy, W) with the output padding that restores H, W
            (the rows and columns the strided forward skipped get zero gradient);
      dW += correlation of x with dy: dW[o,c,i,j] = sum_{n,y,x} dy[n,o,y,x] x[n,c,sy+di,sx+dj],
            computed as one matmul of dy with the gathered input patches (per group);
      db += sum_{n,y,x} dy.
    """

    _param_names = ("weight", "bias")

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        dtype = dtype or torch.get_default_dtype()  # None follows torch.set_default_dtype, as torch.nn
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        self.dilation = _pair(dilation, "dilation")
        if min(self.kernel_size + self.stride + self.dilation) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"Conv2d: kernel_size, stride and dilation must be >= 1 and padding >= 0, got "
                f"{self.kernel_size}, {self.stride}, {self.dilation}, {self.padding}"
            )
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(
                f"Conv2d: groups={groups} must divide in_channels={in_channels} "
                f"and out_channels={out_channels}"
            )
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        # channels-last weights (and activations, see forward): torch's small-batch CPU
        # convolutions run faster on them than on NCHW tensors; the values and shape are
        # torch.nn's, only the memory order differs
        self.weight = torch.zeros(out_channels, in_channels // groups, *self.kernel_size,
                                  dtype=dtype).contiguous(memory_format=torch.channels_last)
        self.bias = torch.zeros(out_channels, dtype=dtype) if bias else None

    def __repr__(self) -> str:
        return (f"Conv2d({self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, "
                f"groups={self.groups}, bias={self.bias is not None})")

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return tuple(
            (size + 2 * p - d * (k - 1) - 1) // s + 1
            for size, p, d, k, s in zip((height, width), self.padding, self.dilation,
                                        self.kernel_size, self.stride)
        )

    def forward(self, x: torch.Tensor, *, record: bool = True) -> torch.Tensor:
        self._check_tensor("input", x, (None, self.in_channels, None, None))
        x = x.contiguous(memory_format=torch.channels_last)
        try:
            y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)
        except RuntimeError as error:  # the only shape torch can still refuse here
            if min(self.output_size(x.shape[2], x.shape[3])) >= 1:
                raise
            raise ValueError(f"{self.name}: input of shape {tuple(x.shape)} is smaller than the "
                             f"dilated kernel after padding") from error
        if not y.is_contiguous(memory_format=torch.channels_last):  # e.g. one input channel
            # channels-last outputs keep every later activation and gradient channels-last,
            # so no layer converts a whole rollout's tensors during the backward
            y = y.contiguous(memory_format=torch.channels_last)
        if record:
            self._records.append((x,))
        return y

    def backward(self, grad_out: torch.Tensor, *, input_grad: bool = True) -> torch.Tensor | None:
        """grad_out (N, C_out, H_out, W_out) -> grad_input (N, C_in, H, W).

        ``input_grad=False`` skips the input gradient (returns None), e.g. for a first
        layer whose input is data.
        """
        self._check_tensor("upstream gradient", grad_out, (None, self.out_channels, None, None))
        records = self._pop_records(grad_out.shape[0], tuple(grad_out.shape))
        x = records[0][0] if len(records) == 1 else torch.cat([r[0] for r in records])
        expected = (x.shape[0], self.out_channels, *self.output_size(x.shape[2], x.shape[3]))
        if tuple(grad_out.shape) != expected:
            raise ValueError(
                f"{self.name}: upstream gradient has shape {tuple(grad_out.shape)}, "
                f"the output had {expected}"
            )
        self._accumulate(self.weight, self._weight_grad(x, grad_out))
        if self.bias is not None:
            self._accumulate(self.bias, grad_out.sum((0, 2, 3)))
        return self._input_grad(grad_out, x.shape[2:]) if input_grad else None

    def _input_grad(self, grad_out: torch.Tensor, in_size) -> torch.Tensor:
        output_padding = tuple(
            size - ((o - 1) * s - 2 * p + d * (k - 1) + 1)
            for size, o, s, p, d, k in zip(in_size, grad_out.shape[2:], self.stride, self.padding,
                                           self.dilation, self.kernel_size)
        )
        grad_out = grad_out.contiguous(memory_format=torch.channels_last)  # faster, as in forward
        return F.conv_transpose2d(grad_out, self.weight, None, self.stride, self.padding,
                                  output_padding, self.groups, self.dilation)

    # rows of the patch matrix gathered at a time: about 1 MB for this network's layers, so
    # a chunk stays in L2 cache instead of streaming a whole rollout's patches (11 MB for
    # the second layer of an 80-frame update) through memory
    _PATCH_BYTES = 1 << 20

    def _weight_grad(self, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        """dW[o, c, i, j] = sum_{n, y, x} dy[n, o, y, x] x_pad[n, c, s*y + d*i, s*x + d*j].

        The patches x_pad[n, :, s*y + d*i, s*x + d*j] are a strided view of the padded
        input held channels-last (N, H, W, C): one copy gathers them into a
        (n*H_out*W_out, kh*kw*C) matrix for a chunk of n frames, and the sum over n, y, x
        is one matmul per group with dy as (C_out, n*H_out*W_out), accumulated over chunks.
        On this network's shapes it beats the classic "convolve x^T with dy^T" form
        (scripts/RESULTS.md, "Layers").
        """
        n, channels, height, width = x.shape
        (kh, kw), (ph, pw) = self.kernel_size, self.padding
        out_h, out_w = grad_out.shape[2:]
        if channels == 1:  # a first layer on frames: im2col beats the strided gather there
            return self._single_channel_weight_grad(x, grad_out)
        groups, in_per_group = self.groups, channels // self.groups
        out_per_group = self.out_channels // groups
        row_bytes = out_h * out_w * kh * kw * channels * x.element_size()
        chunk = max(1, self._PATCH_BYTES // row_bytes)

        padded = x.new_zeros(min(chunk, n), height + 2 * ph, width + 2 * pw, channels)
        grad_w = None
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            part = self._chunk_weight_grad(padded[:stop - start], x[start:stop], grad_out[start:stop])
            grad_w = part if grad_w is None else grad_w.add_(part)
        # (g, kh*kw*C_in/g, C_out/g) -> (C_out, C_in/g, kh, kw), channels-last like the weight
        grad_w = grad_w.reshape(groups, kh, kw, in_per_group, out_per_group)
        grad_w = grad_w.permute(0, 4, 3, 1, 2).reshape(self.out_channels, in_per_group, kh, kw)
        return grad_w.contiguous(memory_format=torch.channels_last)

    def _single_channel_weight_grad(self, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        """The same sum for C_in = 1, where NCHW and channels-last coincide: ``F.unfold``
        (torch's im2col) gathers the patches as (N, kh*kw, H_out*W_out), and the gathering
        copy of the strided form, whose innermost run would be one float, is avoided."""
        kh, kw = self.kernel_size
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)
        cols = cols.transpose(0, 1).reshape(kh * kw, -1)  # (kh*kw, N*H_out*W_out)
        grad = grad_out.permute(0, 2, 3, 1).reshape(cols.shape[1], self.out_channels)
        grad_w = (cols @ grad).t().reshape(self.out_channels, 1, kh, kw)
        return grad_w.contiguous(memory_format=torch.channels_last)

    def _chunk_weight_grad(self, padded: torch.Tensor, x: torch.Tensor, grad_out: torch.Tensor) -> torch.Tensor:
        """(groups, kh*kw*C_in/g, C_out/g) for a chunk of frames; ``padded`` is a zero-bordered
        (n, H + 2p, W + 2p, C) buffer whose interior is overwritten here."""
        n, channels, height, width = x.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        out_h, out_w = grad_out.shape[2:]
        groups, in_per_group = self.groups, channels // self.groups
        out_per_group = self.out_channels // groups
        padded[:, ph:ph + height, pw:pw + width] = x.permute(0, 2, 3, 1)
        st_n, st_h, st_w, _ = padded.stride()
        patches = padded.as_strided(
            (n, out_h, out_w, kh, kw, channels), (st_n, sh * st_h, sw * st_w, dh * st_h, dw * st_w, 1)
        ).reshape(n * out_h * out_w, kh * kw, groups, in_per_group)  # the gathering copy
        grad = grad_out.permute(0, 2, 3, 1).reshape(n * out_h * out_w, groups, out_per_group)
        # patches^T @ dy, not dy^T @ patches: MKL runs this orientation much faster when
        # kh*kw*C_in is small (the first layer)
        if groups == 1:
            return (patches.reshape(-1, kh * kw * in_per_group).t() @ grad[:, 0]).unsqueeze(0)
        per_group = patches.permute(2, 0, 1, 3).reshape(groups, -1, kh * kw * in_per_group)
        return torch.bmm(per_group.transpose(1, 2), grad.transpose(0, 1))
