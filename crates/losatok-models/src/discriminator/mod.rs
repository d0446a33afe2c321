//! The stage-2 discriminators (loss-spec §4–6): X-Codec's MultiFrequencyDiscriminator ([`mfd`],
//! the default "MFD") and X-Codec-2.0's SpecDiscriminator ([`spec`], the alternative), both
//! built from weight-normalised convolutions ([`weight_norm`]).
//!
//! [`DiscriminatorConfig`] selects one; [`Discriminator`] is the module a trainer holds.
//! [`Discriminator::forward`] maps a waveform `[B, N]` to the logits and feature maps of every
//! sub-discriminator ([`DiscOutput`]). [`load_discriminator`] loads reference weights strictly,
//! from either the weight-norm parametrisation (`weight_g`/`weight_v`) or folded `weight`
//! tensors (detected from the keys).
//!
//! PyTorch names (rules of [`crate::checkpoint::torch_key`] for the owner `WnConv2d`):
//!
//! | Burn | PyTorch |
//! |---|---|
//! | `discriminators.{i}.discriminator.{j}.{leaf}` | `discriminators.{i}.discriminator.{j}.{1 if j = 0 else 2}.{leaf}` |
//! | `model.{i}.model.{j}.{leaf}`, j < 5 | `model.disc_{i}.model.layer_{j}.0.{leaf}` |
//! | `model.{i}.model.5.{leaf}` | `model.disc_{i}.model.layer_5.{leaf}` |
//!
//! with `leaf` one of `weight_g`, `weight_v`, `bias` (`weight` in folded files).

pub mod mfd;
pub mod spec;
pub mod weight_norm;

use std::collections::HashSet;
use std::path::Path;

use burn::module::Param;
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{
    load_module, summarize, torch_key, CheckpointError, Problem, TensorSource,
};

pub use mfd::{MfdConfig, MultiFrequencyDiscriminator};
pub use spec::{SpecConfig, SpecDiscriminator};
pub use weight_norm::{WnConv2d, WnConv2dConfig};

/// A discriminator that cannot be built or run on the given input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscriminatorError {
    /// The configuration is inconsistent.
    #[error("invalid discriminator configuration: {0}")]
    InvalidConfig(String),
    /// The waveform is shorter than the discriminator accepts.
    #[error("the discriminator needs at least {min} samples per item, got {len} (use longer training segments)")]
    InputTooShort {
        /// Samples per item given.
        len: usize,
        /// Minimum accepted.
        min: usize,
    },
}

/// Which discriminator to train, with its settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DiscriminatorConfig {
    /// X-Codec's MultiFrequencyDiscriminator (the default).
    Mfd(MfdConfig),
    /// X-Codec-2.0's SpecDiscriminator.
    Spec(SpecConfig),
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        Self::official()
    }
}

impl DiscriminatorConfig {
    /// The recommended discriminator: the MFD in X-Codec's 16 kHz configuration.
    pub fn official() -> Self {
        Self::Mfd(MfdConfig::official())
    }

    /// The MFD of the loss fixtures (32 hidden channels per branch).
    pub fn tiny_fixture() -> Self {
        Self::Mfd(MfdConfig::tiny_fixture())
    }

    /// The SpecDiscriminator in X-Codec-2.0's configuration.
    pub fn official_spec() -> Self {
        Self::Spec(SpecConfig::official())
    }

    /// The SpecDiscriminator of the loss fixtures (2 channels, cap 8).
    pub fn tiny_fixture_spec() -> Self {
        Self::Spec(SpecConfig::tiny_fixture())
    }

    /// Check the settings.
    pub fn validate(&self) -> Result<(), DiscriminatorError> {
        match self {
            Self::Mfd(c) => c.validate(),
            Self::Spec(c) => c.validate(),
        }
    }

    /// The shortest waveform accepted (MFD official: 8192 samples; Spec: 1149).
    pub fn min_input_len(&self) -> usize {
        match self {
            Self::Mfd(c) => c.min_input_len(),
            Self::Spec(c) => c.min_input_len(),
        }
    }

    /// Build with freshly initialised weights.
    pub fn init<B: Backend>(
        &self,
        device: &B::Device,
    ) -> Result<Discriminator<B>, DiscriminatorError> {
        Ok(match self {
            Self::Mfd(c) => Discriminator::Mfd(c.init(device)?),
            Self::Spec(c) => Discriminator::Spec(c.init(device)?),
        })
    }
}

/// Logits and feature maps of every sub-discriminator for one waveform batch.
#[derive(Clone, Debug)]
pub struct DiscOutput<B: Backend> {
    /// Per sub-discriminator, `[B, 1, F', T']` (not flattened).
    pub logits: Vec<Tensor<B, 4>>,
    /// Per sub-discriminator, its post-activation feature maps (6 per MFD branch, 5 per Spec
    /// resolution).
    pub fmaps: Vec<Vec<Tensor<B, 4>>>,
}

/// A discriminator the trainer can hold (see [`DiscriminatorConfig`]).
#[derive(Module, Debug)]
pub enum Discriminator<B: Backend> {
    /// X-Codec's MultiFrequencyDiscriminator.
    Mfd(MultiFrequencyDiscriminator<B>),
    /// X-Codec-2.0's SpecDiscriminator.
    Spec(SpecDiscriminator<B>),
}

impl<B: Backend> Discriminator<B> {
    /// The shortest accepted waveform.
    pub fn min_input_len(&self) -> usize {
        match self {
            Self::Mfd(d) => d.min_input_len(),
            Self::Spec(d) => d.min_input_len(),
        }
    }

    /// Number of sub-discriminators (K).
    pub fn num_subdiscriminators(&self) -> usize {
        match self {
            Self::Mfd(d) => d.discriminators.len(),
            Self::Spec(d) => d.model.len(),
        }
    }

    /// `wave` `[B, N]` → logits and feature maps of every sub-discriminator, or an error if
    /// `N` < [`Self::min_input_len`].
    pub fn try_forward(&self, wave: Tensor<B, 2>) -> Result<DiscOutput<B>, DiscriminatorError> {
        let [_, len] = wave.dims();
        let min = self.min_input_len();
        if len < min {
            return Err(DiscriminatorError::InputTooShort { len, min });
        }
        let (logits, fmaps) = match self {
            Self::Mfd(d) => d.forward_unchecked(wave),
            Self::Spec(d) => d.forward_unchecked(wave),
        };
        Ok(DiscOutput { logits, fmaps })
    }

    /// [`Self::try_forward`] for inputs known to be long enough.
    ///
    /// # Panics
    /// If `N` < [`Self::min_input_len`] (check segment lengths once, at configuration time).
    pub fn forward(&self, wave: Tensor<B, 2>) -> DiscOutput<B> {
        match self.try_forward(wave) {
            Ok(out) => out,
            Err(e) => panic!("{e}"),
        }
    }
}

/// How a checkpoint stores the weight-normalised convolutions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightFormat {
    /// `weight_g` `[out, 1, 1, 1]` and `weight_v` `[out, in, kh, kw]` (the training state).
    WeightNorm,
    /// `weight = g·v/‖v‖` (weight norm removed). Loaded as `v = weight`, `g = ‖weight‖`, which
    /// gives the same forward.
    Folded,
}

/// The weight format of a discriminator checkpoint: weight norm if any key ends in
/// `.weight_g` or `.weight_v`, folded if there are only `.weight` keys.
pub fn detect_weight_format(source: &TensorSource) -> WeightFormat {
    let mut folded = false;
    for k in source.keys() {
        if k.ends_with(".weight_g") || k.ends_with(".weight_v") {
            return WeightFormat::WeightNorm;
        }
        folded |= k.ends_with(".weight");
    }
    if folded {
        WeightFormat::Folded
    } else {
        WeightFormat::WeightNorm
    }
}

/// What [`load_discriminator`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscLoadReport {
    /// The detected weight format.
    pub format: WeightFormat,
    /// Parameter tensors read.
    pub tensors: usize,
    /// Filterbank buffers read (MFD `stfts.{i}.mel_scale.fb`; otherwise recomputed).
    pub buffers: usize,
}

/// Open a discriminator checkpoint (`.pth` or `.safetensors`), keeping only the keys that start
/// with `prefix` (removed; `""` keeps everything), e.g. the discriminator's entries of a
/// training checkpoint.
pub fn open_discriminator_checkpoint(
    path: &Path,
    prefix: &str,
) -> Result<TensorSource, CheckpointError> {
    let mut source = TensorSource::new();
    source.add(path, |k| k.strip_prefix(prefix).map(str::to_string))?;
    if source.keys().next().is_none() {
        return Err(CheckpointError::WrongKind {
            path: path.to_path_buf(),
            message: format!("no tensors under the prefix {prefix:?}"),
        });
    }
    Ok(source)
}

/// Build the discriminator of `config` and load every parameter from `source` (keys relative to
/// the discriminator, PyTorch names), strictly: missing, mis-shaped, non-float and unexpected
/// tensors are all reported in one [`CheckpointError::Mismatch`]. The weight format is detected
/// from the keys ([`detect_weight_format`]). MFD filterbank buffers are used when present
/// (checked for shape) and recomputed otherwise.
pub fn load_discriminator<B: Backend>(
    config: &DiscriminatorConfig,
    source: &TensorSource,
    display_path: &Path,
    device: &B::Device,
) -> Result<(Discriminator<B>, DiscLoadReport), CheckpointError> {
    let model = config
        .init::<B>(device)
        .map_err(|e| CheckpointError::WrongKind {
            path: display_path.to_path_buf(),
            message: e.to_string(),
        })?;
    let format = detect_weight_format(source);
    let mut used = HashSet::new();
    let mut problems = Vec::new();
    let mut buffers = 0;
    let model = match model {
        Discriminator::Mfd(d) => {
            let mut d = match format {
                WeightFormat::WeightNorm => {
                    let (m, u, p) = load_module(d, source);
                    used.extend(u);
                    problems.extend(p);
                    m
                }
                WeightFormat::Folded => {
                    let mut d = d;
                    d.discriminators = d
                        .discriminators
                        .into_iter()
                        .enumerate()
                        .map(|(i, mut branch)| {
                            let i = i.to_string();
                            branch.discriminator = load_folded_convs(
                                branch.discriminator,
                                &["discriminators", &i, "discriminator"],
                                source,
                                &mut used,
                                &mut problems,
                            );
                            branch
                        })
                        .collect();
                    d
                }
            };
            for (i, input) in d.stfts.iter_mut().enumerate() {
                let key = format!("stfts.{i}.mel_scale.fb");
                let f = input.n_freqs();
                if let Some(values) = read_checked(source, &key, &[f, f], &mut used, &mut problems)
                {
                    input.fb = Tensor::from_data(TensorData::new(values, [f, f]), device);
                    buffers += 1;
                }
            }
            Discriminator::Mfd(d)
        }
        Discriminator::Spec(d) => {
            let d = match format {
                WeightFormat::WeightNorm => {
                    let (m, u, p) = load_module(d, source);
                    used.extend(u);
                    problems.extend(p);
                    m
                }
                WeightFormat::Folded => {
                    let mut d = d;
                    d.model = d
                        .model
                        .into_iter()
                        .enumerate()
                        .map(|(i, mut res)| {
                            let i = i.to_string();
                            res.model = load_folded_convs(
                                res.model,
                                &["model", &i, "model"],
                                source,
                                &mut used,
                                &mut problems,
                            );
                            res
                        })
                        .collect();
                    d
                }
            };
            Discriminator::Spec(d)
        }
    };
    // Absent buffers are not problems (they are recomputed); every unused key is.
    let tensors = used.len() - buffers;
    for k in source.keys() {
        if !used.contains(k) {
            problems.push(Problem::Unexpected(k.to_string()));
        }
    }
    if !problems.is_empty() {
        return Err(CheckpointError::Mismatch {
            path: display_path.to_path_buf(),
            summary: summarize(&problems),
            problems,
        });
    }
    Ok((
        model,
        DiscLoadReport {
            format,
            tensors,
            buffers,
        },
    ))
}

/// Read `key` if present, checking dtype and shape; records the key as used. Absent keys return
/// `None` without a problem (the caller decides whether that is one).
fn read_checked(
    source: &TensorSource,
    key: &str,
    expected: &[usize],
    used: &mut HashSet<String>,
    problems: &mut Vec<Problem>,
) -> Option<Vec<f32>> {
    let info = source.info(key)?;
    used.insert(key.to_string());
    if !matches!(info.dtype.as_str(), "F32" | "F64" | "F16" | "BF16") {
        problems.push(Problem::Dtype {
            key: key.to_string(),
            found: info.dtype,
        });
        return None;
    }
    if info.shape != expected {
        problems.push(Problem::Shape {
            key: key.to_string(),
            expected: expected.to_vec(),
            found: info.shape,
        });
        return None;
    }
    match source.read_f32(key) {
        Ok(v) => Some(v),
        Err(message) => {
            problems.push(Problem::Unreadable {
                key: key.to_string(),
                message,
            });
            None
        }
    }
}

/// Load folded convolutions (`{base}.{j}…weight`, `…bias`) into weight-normalised ones:
/// `v = weight`, `g = ‖weight‖`. `base` is the Burn path of the `Vec` of convolutions.
fn load_folded_convs<B: Backend>(
    convs: Vec<WnConv2d<B>>,
    base: &[&str],
    source: &TensorSource,
    used: &mut HashSet<String>,
    problems: &mut Vec<Problem>,
) -> Vec<WnConv2d<B>> {
    convs
        .into_iter()
        .enumerate()
        .map(|(j, mut conv)| {
            let j = j.to_string();
            let key_of = |leaf: &str| {
                let mut path: Vec<&str> = base.to_vec();
                path.push(&j);
                path.push(leaf);
                torch_key(&path, "WnConv2d").0
            };
            let v_key = key_of("weight_v");
            let w_key = match v_key.strip_suffix("_v") {
                Some(k) => k.to_string(),
                None => v_key.clone(),
            };
            let b_key = key_of("bias");
            let v_shape = conv.weight_v.dims().to_vec();
            let b_shape = conv.bias.dims().to_vec();
            let device = conv.bias.device();
            for (key, shape) in [(&w_key, &v_shape), (&b_key, &b_shape)] {
                if !source.contains(key) {
                    problems.push(Problem::Missing(key.clone()));
                    continue;
                }
                let Some(values) = read_checked(source, key, shape, used, problems) else {
                    continue;
                };
                if key == &b_key {
                    let t =
                        Tensor::<B, 1>::from_data(TensorData::new(values, shape.clone()), &device);
                    conv.bias = Param::initialized(conv.bias.id, t.require_grad());
                } else {
                    let t =
                        Tensor::<B, 4>::from_data(TensorData::new(values, shape.clone()), &device);
                    conv.weight_v = Param::initialized(conv.weight_v.id, t.require_grad());
                    conv = conv.reset_magnitude_from_direction();
                }
            }
            conv
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::torch_names;
    use burn::backend::Flex;

    #[test]
    fn mfd_names_follow_the_sequential_indices() {
        let k = |p: &[&str]| torch_key(p, "WnConv2d").0;
        assert_eq!(
            k(&["discriminators", "0", "discriminator", "0", "weight_g"]),
            "discriminators.0.discriminator.0.1.weight_g"
        );
        assert_eq!(
            k(&["discriminators", "5", "discriminator", "6", "weight_v"]),
            "discriminators.5.discriminator.6.2.weight_v"
        );
        assert_eq!(
            k(&["discriminators", "3", "discriminator", "1", "bias"]),
            "discriminators.3.discriminator.1.2.bias"
        );
        // nested inside a bigger module: the prefix is kept
        assert_eq!(
            k(&["disc", "discriminators", "0", "discriminator", "4", "bias"]),
            "disc.discriminators.0.discriminator.4.2.bias"
        );
    }

    #[test]
    fn spec_names_follow_the_layer_modules() {
        let k = |p: &[&str]| torch_key(p, "WnConv2d").0;
        assert_eq!(
            k(&["model", "0", "model", "0", "weight_g"]),
            "model.disc_0.model.layer_0.0.weight_g"
        );
        assert_eq!(
            k(&["model", "7", "model", "4", "bias"]),
            "model.disc_7.model.layer_4.0.bias"
        );
        assert_eq!(
            k(&["model", "7", "model", "5", "weight_v"]),
            "model.disc_7.model.layer_5.weight_v"
        );
    }

    #[test]
    fn other_owners_are_untouched_by_the_discriminator_rules() {
        // Same path shapes, other owners: no rewriting.
        let (k, _) = torch_key(&["model", "0", "model", "0", "weight"], "Conv2d");
        assert_eq!(k, "model.0.model.0.weight");
        let (k, _) = torch_key(
            &["discriminators", "0", "discriminator", "0", "bias"],
            "Linear",
        );
        assert_eq!(k, "discriminators.0.discriminator.0.bias");
    }

    #[test]
    fn every_parameter_has_a_reference_name() {
        let dev = Default::default();
        let Discriminator::Mfd(mfd) = DiscriminatorConfig::tiny_fixture()
            .init::<Flex>(&dev)
            .unwrap()
        else {
            unreachable!()
        };
        let names = torch_names(&mfd.discriminators);
        assert_eq!(names.len(), 6 * 7 * 3);
        let Discriminator::Spec(spec) = DiscriminatorConfig::tiny_fixture_spec()
            .init::<Flex>(&dev)
            .unwrap()
        else {
            unreachable!()
        };
        let names = torch_names(&spec.model);
        assert_eq!(names.len(), 8 * 6 * 3);
    }

    #[test]
    fn official_sizes_match_the_reference_parameter_counts() {
        let dev = Default::default();
        let mfd = DiscriminatorConfig::official().init::<Flex>(&dev).unwrap();
        let n = mfd.num_params();
        assert!((5_250_000..5_270_000).contains(&n), "MFD: {n}");
        let spec = DiscriminatorConfig::official_spec()
            .init::<Flex>(&dev)
            .unwrap();
        let n = spec.num_params();
        assert!((18_050_000..18_150_000).contains(&n), "Spec: {n}");
    }

    #[test]
    fn records_round_trip_for_trainer_checkpoints() {
        let dev = Default::default();
        for cfg in [
            DiscriminatorConfig::tiny_fixture(),
            DiscriminatorConfig::tiny_fixture_spec(),
        ] {
            let a = cfg.init::<Flex>(&dev).unwrap();
            let b = cfg
                .init::<Flex>(&dev)
                .unwrap()
                .load_record(a.clone().into_record());
            let wave = Tensor::<Flex, 2>::random(
                [1, 8192],
                burn::tensor::Distribution::Uniform(-0.5, 0.5),
                &dev,
            );
            let (oa, ob) = (a.forward(wave.clone()), b.forward(wave));
            for (x, y) in oa.logits.into_iter().zip(ob.logits) {
                assert_eq!(x.into_data(), y.into_data());
            }
        }
    }

    #[test]
    fn short_inputs_are_an_error() {
        let dev = Default::default();
        let d = DiscriminatorConfig::tiny_fixture()
            .init::<Flex>(&dev)
            .unwrap();
        assert_eq!(d.min_input_len(), 8192);
        let wave = Tensor::<Flex, 2>::zeros([1, 8191], &dev);
        assert_eq!(
            d.try_forward(wave).unwrap_err(),
            DiscriminatorError::InputTooShort {
                len: 8191,
                min: 8192
            }
        );
    }

    #[test]
    fn configs_round_trip_through_serde() {
        for c in [
            DiscriminatorConfig::official(),
            DiscriminatorConfig::tiny_fixture_spec(),
        ] {
            let s = serde_json::to_string(&c).unwrap();
            let back: DiscriminatorConfig = serde_json::from_str(&s).unwrap();
            assert_eq!(back, c);
        }
        let s = r#"{"kind":"mfd","sample_rate":16000,"hop_lengths":[32],"hidden_channels":[64]}"#;
        let c: DiscriminatorConfig = serde_json::from_str(s).unwrap();
        assert_eq!(c.min_input_len(), 256);
    }
}
