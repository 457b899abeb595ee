"""Pure, typed torch functions for the Frequency Principle: projection, spectrum, filtering, theory.

Every function validates its input and raises ``ValueError`` naming the argument; none of them keeps state.
"""

from fp_lightning.functional.denoising import denoised_loss, leave_one_out_lowpass, scale_free_delta
from fp_lightning.functional.errors import relative_spectral_error
from fp_lightning.functional.filtering import GaussianFilterBank, default_deltas, gaussian_lowpass, low_high_errors
from fp_lightning.functional.prediction_changes import predicted_classes, prediction_changes
from fp_lightning.functional.projection import (
    PrincipalComponents,
    PrincipalProjection,
    principal_components,
    principal_projection,
)
from fp_lightning.functional.selection import select_frequencies
from fp_lightning.functional.spectrum import nufft_spectrum
from fp_lightning.functional.targets import prepare_targets, resolve_output_transform
from fp_lightning.functional.theory import (
    frequency_loss_split,
    intermediate_stage_ratio,
    loss_change_ratio,
    loss_density,
    low_frequency_share,
    output_change_ratio,
)
from fp_lightning.functional.weighted_loss import (
    frequency_weighted_loss,
    high_pass_weights,
    low_pass_weights,
    projected_frequency_weighted_loss,
)

__all__ = [
    "GaussianFilterBank",
    "PrincipalComponents",
    "PrincipalProjection",
    "default_deltas",
    "denoised_loss",
    "frequency_loss_split",
    "frequency_weighted_loss",
    "gaussian_lowpass",
    "high_pass_weights",
    "intermediate_stage_ratio",
    "leave_one_out_lowpass",
    "loss_change_ratio",
    "loss_density",
    "low_frequency_share",
    "low_high_errors",
    "low_pass_weights",
    "nufft_spectrum",
    "output_change_ratio",
    "predicted_classes",
    "prediction_changes",
    "prepare_targets",
    "principal_components",
    "principal_projection",
    "projected_frequency_weighted_loss",
    "relative_spectral_error",
    "resolve_output_transform",
    "scale_free_delta",
    "select_frequencies",
]
