"""Quaternion neural-network layers (Hamilton-product conv / transposed conv / linear, quaternion batch norm).

A real tensor with C channels holds C/4 quaternion channels as contiguous [r | i | j | k] blocks.
The maths lives in :mod:`quaternion_layers.functional`; the modules are thin wrappers whose parameter
names and shapes match the authors' RH-emo code.

>>> from quaternion_layers import QuaternionConv, QuaternionBatchNorm2d
>>> import torch
>>> y = QuaternionBatchNorm2d(8)(QuaternionConv(4, 8, 3, padding=1, seed=0)(torch.randn(2, 4, 8, 8)))
"""
from . import functional
from .batchnorm import QuaternionBatchNorm2d
from .conv import QuaternionConv, QuaternionTransposeConv
from .linear import QuaternionLinear

__all__ = ["QuaternionConv", "QuaternionTransposeConv", "QuaternionLinear", "QuaternionBatchNorm2d",
           "functional"]
