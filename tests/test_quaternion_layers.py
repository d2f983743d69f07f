"""QuaternionConv / QuaternionTransposeConv / QuaternionLinear modules against numpy-quaternion, the adjoint
identity, gradcheck, and the reference state_dict names/shapes (original_system.md §1.2–1.3)."""
import numpy as np
import pytest
import quaternion  # numpy-quaternion
import torch
from torch.autograd import gradcheck

from quaternion_layers import QuaternionConv, QuaternionLinear, QuaternionTransposeConv


# ------------------------------------------------------------------------------------ numpy-quaternion truth
def to_quat(x: torch.Tensor, axis: int) -> np.ndarray:
    """Real tensor with [r|i|j|k] blocks along ``axis`` → quaternion ndarray (block axis becomes channels)."""
    parts = np.split(x.detach().double().numpy(), 4, axis=axis)
    return quaternion.as_quat_array(np.stack(parts, axis=-1))


def weights_quat(layer) -> np.ndarray:
    w = torch.stack([layer.r_weight, layer.i_weight, layer.j_weight, layer.k_weight], -1).detach().double()
    return quaternion.as_quat_array(w.numpy())


def from_quat(q: np.ndarray, axis: int) -> np.ndarray:
    f = quaternion.as_float_array(q)
    return np.concatenate([f[..., c] for c in range(4)], axis=axis)


def conv2d_truth(xq, wq, stride, padding, dilation, groups):
    """y[n,o,h,w] = Σ_{c,a,b} W[o,c,a,b] ⊗ x[n, g·C+c, h·s+a·d−p, w·s+b·d−p] (zero padding), loops over taps."""
    n, cin, hgt, wid = xq.shape
    out_q, cg, kh, kw = wq.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    xp = np.zeros((n, cin, hgt + 2 * ph, wid + 2 * pw), dtype=np.quaternion)
    xp[:, :, ph:ph + hgt, pw:pw + wid] = xq
    ho = (hgt + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (wid + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, out_q, ho, wo), dtype=np.quaternion)
    per_group = out_q // groups
    for o in range(out_q):
        g = o // per_group
        for a in range(kh):
            for b in range(kw):
                patch = xp[:, g * cg:(g + 1) * cg, a * dh:a * dh + sh * (ho - 1) + 1:sh,
                           b * dw:b * dw + sw * (wo - 1) + 1:sw]
                y[:, o] += (wq[o, :, a, b][None, :, None, None] * patch).sum(axis=1)
    return y


def tconv2d_truth(xq, wq, stride, padding, output_padding, dilation, groups):
    """Scatter form of the transposed conv with conj(W):
    y[n, g·O+o, h·s+a·d−p, ...] += conj(W[c,o,a,b]) ⊗ x[n,c,h,w]."""
    n, cin, hgt, wid = xq.shape
    _, og, kh, kw = wq.shape
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    ho = (hgt - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    wo = (wid - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((n, og * groups, ho + 2 * ph, wo + 2 * pw), dtype=np.quaternion)
    per_group = cin // groups
    for c in range(cin):
        g = c // per_group
        for a in range(kh):
            for b in range(kw):
                contrib = np.conj(wq[c, :, a, b])[None, :, None, None] * xq[:, c][:, None]
                full[:, g * og:(g + 1) * og, a * dh:a * dh + sh * (hgt - 1) + 1:sh,
                     b * dw:b * dw + sw * (wid - 1) + 1:sw] += contrib
    return full[:, :, ph:ph + ho, pw:pw + wo]


def _random_bias(layer, seed):
    with torch.no_grad():
        layer.bias.copy_(torch.randn(layer.bias.shape, generator=torch.Generator().manual_seed(seed)))


# ----------------------------------------------------------------------------------------------- conv
@pytest.mark.parametrize("k,stride,padding,dilation,groups", [
    (1, 1, 0, 1, 1),
    (3, 1, 1, 1, 1),
    ((3, 2), (2, 1), (1, 0), 1, 1),
    (3, 2, 2, 2, 1),
    (3, 1, 1, 1, 2),
])
def test_conv2d_matches_numpy_quaternion(k, stride, padding, dilation, groups):
    layer = QuaternionConv(16, 8, k, stride, padding, dilation, groups, seed=0).double()
    _random_bias(layer, 1)
    x = torch.randn(2, 16, 7, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = layer(x).detach().numpy()
    want = conv2d_truth(to_quat(x, 1), weights_quat(layer), layer.stride, layer.padding, layer.dilation, groups)
    want = from_quat(want, 1) + layer.bias.detach().numpy()[None, :, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("operation,shape", [("convolution1d", (2, 8, 7)), ("convolution3d", (2, 8, 1, 1, 7))])
def test_conv1d_3d_equal_the_2d_conv_with_unit_extent(operation, shape):
    """1-D/3-D convs equal the verified 2-D conv when the extra spatial axes are 1 wide: for 3-D with
    kernel 3 and padding 1 on a 1×1 (depth, height), only the centre taps of those axes act."""
    layer = QuaternionConv(8, 12, 3, stride=2, padding=1, operation=operation, seed=3).double()
    _random_bias(layer, 4)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    ref = QuaternionConv(8, 12, (1, 3), stride=(1, 2), padding=(0, 1), seed=6).double()
    with torch.no_grad():
        ref.bias.copy_(layer.bias)
        for p in "rijk":
            w = getattr(layer, f"{p}_weight")
            getattr(ref, f"{p}_weight").copy_(w[:, :, None] if w.dim() == 3 else w[:, :, 1, 1:2])
    if operation == "convolution1d":
        torch.testing.assert_close(layer(x), ref(x[:, :, None])[:, :, 0])
    else:
        torch.testing.assert_close(layer(x), ref(x[:, :, 0])[:, :, None])


@pytest.mark.parametrize("stride,padding,output_padding,dilation,groups", [
    (1, 0, 0, 1, 1),
    (2, 1, 1, 1, 1),
    ((2, 1), 1, (1, 0), 1, 1),
    (2, 0, 1, 2, 1),
    (1, 1, 0, 1, 2),
])
def test_transpose_conv2d_matches_conj_w_times_x(stride, padding, output_padding, dilation, groups):
    layer = QuaternionTransposeConv(8, 16, 3, stride, padding, output_padding, groups, dilation, seed=7).double()
    _random_bias(layer, 8)
    x = torch.randn(2, 8, 5, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    got = layer(x).detach().numpy()
    want = tconv2d_truth(to_quat(x, 1), weights_quat(layer), layer.stride, layer.padding, layer.output_padding,
                         layer.dilation, groups)
    want = from_quat(want, 1) + layer.bias.detach().numpy()[None, :, None, None]
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_transpose_conv_1x1_is_conjugate_product():
    layer = QuaternionTransposeConv(8, 12, 1, bias=False, seed=10).double()
    x = torch.randn(3, 8, 1, 1, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    wq = weights_quat(layer)[:, :, 0, 0]                       # (in/4, out/4)
    xq = to_quat(x[:, :, 0, 0], 1)                             # (N, in/4)
    want = (np.conj(wq)[None] * xq[:, :, None]).sum(axis=1)    # y[n,o] = Σ_c conj(W[c,o]) ⊗ x[n,c]
    np.testing.assert_allclose(layer(x)[:, :, 0, 0].detach().numpy(), from_quat(want, 1), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------ adjoint
def _share_weights(src, dst):
    with torch.no_grad():
        for p in ("r_weight", "i_weight", "j_weight", "k_weight", "scale_param"):
            if getattr(src, p, None) is not None:
                getattr(dst, p).copy_(getattr(src, p))


@pytest.mark.parametrize("operation,spatial,k,stride,padding,dilation", [
    ("convolution1d", (9,), 3, 2, 1, 1),
    ("convolution2d", (7, 6), (3, 2), (2, 1), (1, 0), 1),
    ("convolution2d", (8, 8), 3, 2, 2, 2),
    ("convolution3d", (5, 4, 5), 3, (2, 1, 2), 1, 1),
])
@pytest.mark.parametrize("groups,rotation,quaternion_format", [(1, False, True), (2, False, True),
                                                                (1, True, True), (2, True, False)])
def test_transpose_conv_is_the_adjoint_of_conv(operation, spatial, k, stride, padding, dilation, groups,
                                               rotation, quaternion_format):
    """<conv(x), y> = <x, tconv(y)> with the same weights: the transposed layer is conj(W) ⊗ (adjoint)."""
    conv = QuaternionConv(8, 16, k, stride, padding, dilation, groups, bias=False, operation=operation,
                          rotation=rotation, quaternion_format=quaternion_format, scale=rotation, seed=12).double()
    comps = conv.components
    g = torch.Generator().manual_seed(13)
    x = torch.randn(2, comps * 2, *spatial, generator=g, dtype=torch.float64)
    cx = conv(x)
    nd = len(spatial)
    ks, ss = conv.kernel_size, conv.stride
    ps, ds = conv.padding, conv.dilation
    out_pad = tuple(n - ((m - 1) * s - 2 * p + d * (kk - 1) + 1)
                    for n, m, s, p, d, kk in zip(spatial, cx.shape[2:], ss, ps, ds, ks))
    tconv = QuaternionTransposeConv(16, 8, k, stride, padding, out_pad, groups, dilation, bias=False,
                                    operation=operation, rotation=rotation, quaternion_format=quaternion_format,
                                    scale=rotation, seed=14).double()
    _share_weights(conv, tconv)
    y = torch.randn(cx.shape, generator=g, dtype=torch.float64)
    ty = tconv(y)
    assert ty.shape == x.shape and len(ty.shape) == nd + 2
    lhs, rhs = (cx * y).sum().item(), (x * ty).sum().item()
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


# ------------------------------------------------------------------------------------------------- linear
@pytest.mark.parametrize("shape", [(5, 12), (3, 2, 12), (12,), (0, 12)])
def test_linear_matches_numpy_quaternion(shape):
    layer = QuaternionLinear(12, 8, seed=15).double()
    _random_bias(layer, 16)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(17), dtype=torch.float64)
    wq = weights_quat(layer)                                    # (in/4, out/4)
    xq = to_quat(x, -1)                                         # (..., in/4)
    want = (wq * xq[..., :, None]).sum(axis=-2)                 # y[o] = Σ_c W[c,o] ⊗ x[c]
    want = from_quat(want, -1) + layer.bias.detach().numpy()
    got = layer(x)
    assert got.shape == shape[:-1] + (8,)
    np.testing.assert_allclose(got.detach().numpy(), want, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------------------- gradcheck
@pytest.mark.parametrize("make,shape", [
    (lambda: QuaternionConv(8, 8, 3, padding=1, seed=0), (1, 8, 3, 3)),
    (lambda: QuaternionConv(8, 8, 2, operation="convolution1d", seed=0), (2, 8, 4)),
    (lambda: QuaternionConv(8, 8, 2, rotation=True, scale=True, seed=0), (1, 8, 3, 3)),
    (lambda: QuaternionTransposeConv(8, 4, 3, stride=2, padding=1, output_padding=1, seed=0), (1, 8, 2, 2)),
    (lambda: QuaternionTransposeConv(8, 8, 2, stride=2, rotation=True, seed=0), (1, 6, 2, 2)),
    (lambda: QuaternionLinear(8, 12, seed=0), (2, 3, 8)),
])
def test_module_gradcheck(make, shape):
    layer = make().double()
    _random_bias(layer, 1)
    x = torch.randn(shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64, requires_grad=True)
    names, params = zip(*layer.named_parameters())

    def f(x, *p):
        return torch.func.functional_call(layer, dict(zip(names, p)), (x,))

    assert gradcheck(f, (x, *params))


# --------------------------------------------------------------------------------------- state dict / API
def _shapes(module):
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_state_dict_names_and_shapes_match_reference():
    assert _shapes(QuaternionConv(4, 64, 11, 4, 2)) == {
        "r_weight": (16, 1, 11, 11), "i_weight": (16, 1, 11, 11), "j_weight": (16, 1, 11, 11),
        "k_weight": (16, 1, 11, 11), "bias": (64,)}
    assert _shapes(QuaternionConv(64, 256, 1, bias=False)) == {f"{p}_weight": (64, 16, 1, 1) for p in "rijk"}
    assert _shapes(QuaternionConv(8, 12, 3, operation="convolution1d"))["r_weight"] == (3, 2, 3)
    assert _shapes(QuaternionConv(8, 12, (1, 2, 3), operation="convolution3d"))["k_weight"] == (3, 2, 1, 2, 3)
    assert _shapes(QuaternionTransposeConv(4, 4, 3, stride=(2, 1), padding=1, output_padding=(1, 0))) == {
        **{f"{p}_weight": (1, 1, 3, 3) for p in "rijk"}, "bias": (4,)}
    assert _shapes(QuaternionTransposeConv(8, 32, 3)) == {**{f"{p}_weight": (2, 8, 3, 3) for p in "rijk"},
                                                          "bias": (32,)}
    assert _shapes(QuaternionLinear(9216, 4096)) == {**{f"{p}_weight": (2304, 1024) for p in "rijk"},
                                                     "bias": (4096,)}
    assert list(QuaternionLinear(8, 8).state_dict()) == ["r_weight", "i_weight", "j_weight", "k_weight", "bias"]
    rot = QuaternionConv(8, 8, 3, rotation=True, scale=True)
    assert _shapes(rot)["zero_kernel"] == (2, 2, 3, 3) and _shapes(rot)["scale_param"] == (2, 2, 3, 3)
    assert not rot.zero_kernel.requires_grad and torch.all(rot.zero_kernel == 0)


def test_parameter_count_is_a_quarter_of_the_real_layer():
    layer = QuaternionConv(64, 192, 5, padding=2)
    assert sum(p.numel() for p in layer.parameters()) == 4 * 16 * 48 * 25 + 192


def test_output_shapes_of_reference_layers():
    dec = QuaternionTransposeConv(4, 4, 3, stride=(2, 1), padding=1, output_padding=(1, 0))
    assert dec(torch.zeros(1, 4, 64, 64)).shape == (1, 4, 128, 64)
    alex = QuaternionConv(4, 64, 11, stride=4, padding=2)
    assert alex(torch.zeros(1, 4, 64, 64)).shape == (1, 64, 15, 15)


def test_string_padding_equals_explicit_padding():
    x = torch.randn(2, 8, 7, 6)
    same, explicit = QuaternionConv(8, 8, 3, padding="same", seed=1), QuaternionConv(8, 8, 3, padding=1, seed=1)
    torch.testing.assert_close(same(x), explicit(x))
    valid, zero = QuaternionConv(8, 8, 3, stride=2, padding="valid", seed=1), QuaternionConv(8, 8, 3, 2, seed=1)
    torch.testing.assert_close(valid(x), zero(x))


def test_repr_is_printable():
    text = repr(torch.nn.Sequential(QuaternionConv(4, 8, 3, padding=1), QuaternionTransposeConv(8, 4, 2, 2),
                                    QuaternionLinear(8, 4)))
    assert "QuaternionConv(4, 8, kernel_size=(3, 3)" in text and "in_features=8, out_features=4" in text


# ---------------------------------------------------------------------------------------------- errors
@pytest.mark.parametrize("make,match", [
    (lambda: QuaternionConv(6, 8, 3), "in_channels must be a positive multiple of 4.*got 6"),
    (lambda: QuaternionConv(8, 10, 3), "out_channels must be a positive multiple of 4.*got 10"),
    (lambda: QuaternionTransposeConv(8, 2, 3), "out_channels .* got 2"),
    (lambda: QuaternionLinear(7, 8), "in_features must be a positive multiple of 4.*got 7"),
    (lambda: QuaternionConv(8, 8, 3, operation="convolution4d"), "operation must be one of"),
    (lambda: QuaternionConv(8, 12, 3, groups=2), "groups must be a positive int dividing"),
    (lambda: QuaternionConv(8, 8, 3, init_criterion="xavier"), "init_criterion must be one of"),
    (lambda: QuaternionLinear(8, 8, weight_init="normal"), "weight_init must be one of"),
    (lambda: QuaternionConv(8, 8, (3, 3, 3)), "kernel_size must be an int or a tuple of 2 ints"),
    (lambda: QuaternionConv(8, 8, 3, scale=True), "scale=True only applies to the rotation form"),
    (lambda: QuaternionConv(8, 8, 3, seed="abc"), "seed must be None, an int or a torch.Generator"),
])
def test_constructor_errors(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_forward_errors_name_expected_and_got():
    with pytest.raises(ValueError, match="expected 8 input channels, got 4"):
        QuaternionConv(8, 8, 3)(torch.zeros(1, 4, 5, 5))
    with pytest.raises(ValueError, match=r"expected a 4-D input \(N, C, H, W\).*got shape \(8, 5, 5\)"):
        QuaternionConv(8, 8, 3)(torch.zeros(8, 5, 5))
    with pytest.raises(ValueError, match="expected a 3-D input"):
        QuaternionTransposeConv(8, 8, 3, operation="convolution1d")(torch.zeros(1, 8, 5, 5))
    with pytest.raises(ValueError, match="expected 6 input channels, got 8"):
        QuaternionConv(8, 8, 3, rotation=True, quaternion_format=False)(torch.zeros(1, 8, 5, 5))
    with pytest.raises(ValueError, match=r"expected input \(\.\.\., 16\), got shape \(2, 12\)"):
        QuaternionLinear(16, 8)(torch.zeros(2, 12))
