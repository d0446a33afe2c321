//! The one place that knows PyTorch checkpoint names.
//!
//! The Burn module tree mirrors the PyTorch one, so a parameter's Burn path *is* its state-dict
//! key, except for the rules of [`torch_key`] (the whole remap table):
//!
//! | Burn | PyTorch | why |
//! |---|---|---|
//! | `LayerNorm.gamma` / `.beta` | `.weight` / `.bias` | Burn's field names |
//! | `Linear.weight` `[in, out]` | `.weight` `[out, in]` | transposed on load and export |
//! | `…bottleneck.{downsample,upsample}.fc1` / `.fc2` | `….0` / `….2` | `nn.Sequential` indices |
//! | `WnConv2d` in `discriminators.{i}.discriminator.{j}` | `….{j}.1` (j = 0) / `….{j}.2` | MFD `nn.Sequential` indices |
//! | `WnConv2d` in `model.{i}.model.{j}` | `model.disc_{i}.model.layer_{j}.0` (j < 5) / `….layer_5` | SpecDiscriminator module names |
//!
//! Three kinds of file are read: a LoSATok checkpoint (`losatok_kl1e-*.pth`, the `AudioVAE`
//! state dict, raw or wrapped in `{"state_dict": …}`, or a safetensors export with the same
//! names), a semantic-encoder checkpoint (`semantic_encoder.pth`: `encoder.*` + `bottleneck.*`),
//! and MiDashengLM's own sharded safetensors (`audio_encoder.*`, read shard by shard without
//! touching the language model's tensors). Loading is strict: every expected tensor must be
//! present with the right shape and a float dtype, and unknown keys are reported.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::prelude::*;
use burn::tensor::DType;
use burn_store::pytorch::PytorchReader;
use burn_store::TensorSnapshot;

use crate::config::LosatokConfig;
use crate::losatok::Losatok;

/// A checkpoint that cannot be used (one line; names the file and the offending keys).
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The file cannot be opened.
    #[error("cannot read checkpoint {path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// An export cannot be written (the path is not writable, the disk is full).
    #[error("cannot write {path}: {message}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The bytes are not a readable checkpoint (corrupt zip, bad pickle, bad header).
    #[error("checkpoint {path} is not a valid PyTorch or safetensors file: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What the reader reported.
        message: String,
    },
    /// The tensors do not match the model.
    #[error("checkpoint {path} does not match the model: {summary}")]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Missing / unexpected / mis-shaped / wrong-dtype keys, summarised on one line.
        summary: String,
        /// Every problem, for programs.
        problems: Vec<Problem>,
    },
    /// A different kind of file than expected (e.g. a semantic encoder where a LoSATok
    /// checkpoint is needed).
    #[error("checkpoint {path}: {message}")]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// What it is and what is needed.
        message: String,
    },
}

/// One mismatch between a checkpoint and the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// An expected tensor is absent.
    Missing(String),
    /// A tensor the model does not have.
    Unexpected(String),
    /// Present with another shape.
    Shape {
        /// PyTorch key.
        key: String,
        /// Shape the model needs (PyTorch layout).
        expected: Vec<usize>,
        /// Shape in the file.
        found: Vec<usize>,
    },
    /// Present with a non-float dtype.
    Dtype {
        /// PyTorch key.
        key: String,
        /// The dtype in the file.
        found: String,
    },
    /// A constant buffer whose values differ from what this implementation computes.
    Buffer {
        /// PyTorch key.
        key: String,
        /// What differs.
        message: String,
    },
    /// The tensor holds NaN or infinite values (a damaged or diverged checkpoint).
    NonFinite {
        /// PyTorch key.
        key: String,
    },
    /// The tensor data could not be read.
    Unreadable {
        /// PyTorch key.
        key: String,
        /// The reader's message.
        message: String,
    },
}

/// One line summarising problems by kind (at most four keys named per kind).
pub fn summarize(problems: &[Problem]) -> String {
    let mut groups: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for p in problems {
        let (kind, text) = match p {
            Problem::Missing(k) => ("missing", k.clone()),
            Problem::Unexpected(k) => ("unexpected", k.clone()),
            Problem::Shape {
                key,
                expected,
                found,
            } => (
                "wrong shape",
                format!("{key} (expected {expected:?}, found {found:?})"),
            ),
            Problem::Dtype { key, found } => ("wrong dtype", format!("{key} ({found})")),
            Problem::Buffer { key, message } => {
                ("unsupported buffer", format!("{key} ({message})"))
            }
            Problem::NonFinite { key } => ("with NaN or infinite values", key.clone()),
            Problem::Unreadable { key, message } => ("unreadable", format!("{key} ({message})")),
        };
        groups.entry(kind).or_default().push(text);
    }
    groups
        .into_iter()
        .map(|(kind, keys)| {
            let shown: Vec<&str> = keys.iter().take(4).map(String::as_str).collect();
            let more = if keys.len() > 4 {
                format!(" and {} more", keys.len() - 4)
            } else {
                String::new()
            };
            format!("{} {kind}: {}{more}", keys.len(), shown.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// How a parameter's data is laid out in PyTorch relative to Burn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    /// Same layout.
    Same,
    /// A 2-D matrix stored transposed (`nn.Linear`: PyTorch `[out, in]`, Burn `[in, out]`).
    Transposed,
}

/// The remap table: Burn parameter path (and the type of the module owning it) → PyTorch key and
/// layout. See the module documentation for the rules.
pub fn torch_key(path: &[&str], owner: &str) -> (String, Layout) {
    if owner == "WnConv2d" {
        if let Some(key) = discriminator_key(path) {
            return (key, Layout::Same);
        }
    }
    let mut segs: Vec<&str> = path.to_vec();
    let n = segs.len();
    let mut layout = Layout::Same;
    match (owner, segs[n - 1]) {
        ("LayerNorm", "gamma") => segs[n - 1] = "weight",
        ("LayerNorm", "beta") => segs[n - 1] = "bias",
        ("Linear", "weight") => layout = Layout::Transposed,
        _ => {}
    }
    // nn.Sequential(Linear, GELU, Linear) of SemBo: fc1 ↔ 0, fc2 ↔ 2
    if n >= 4
        && (segs[n - 3] == "downsample" || segs[n - 3] == "upsample")
        && segs[n - 4] == "bottleneck"
    {
        segs[n - 2] = match segs[n - 2] {
            "fc1" => "0",
            "fc2" => "2",
            other => other,
        };
    }
    (segs.join("."), layout)
}

/// PyTorch key of a weight-normalised discriminator convolution parameter (`leaf` =
/// `weight_g` / `weight_v` / `bias`), from the end of its Burn path:
///
/// * MFD `discriminators.{i}.discriminator.{j}.{leaf}` → `….{j}.{1|2}.{leaf}`: the conv's index
///   in block `j`'s `nn.Sequential` (`ReflectionPad2d, Conv2d` for block 0; `LeakyReLU,
///   ReflectionPad2d, Conv2d` after);
/// * Spec `model.{i}.model.{j}.{leaf}` → `model.disc_{i}.model.layer_{j}.0.{leaf}` for the
///   activated layers j < 5 (`nn.Sequential(Conv2d, LeakyReLU)`), `….layer_5.{leaf}` for the
///   logit conv.
fn discriminator_key(path: &[&str]) -> Option<String> {
    let n = path.len();
    if n < 5 {
        return None;
    }
    let head = path[..n - 5].join(".");
    let join = |tail: String| {
        if head.is_empty() {
            tail
        } else {
            format!("{head}.{tail}")
        }
    };
    let (i, j, leaf) = (path[n - 4], path[n - 2], path[n - 1]);
    i.parse::<usize>().ok()?;
    let j: usize = j.parse().ok()?;
    match (path[n - 5], path[n - 3]) {
        ("discriminators", "discriminator") => {
            let seq = if j == 0 { 1 } else { 2 };
            Some(join(format!(
                "discriminators.{i}.discriminator.{j}.{seq}.{leaf}"
            )))
        }
        ("model", "model") => {
            let seq = if j < 5 { ".0" } else { "" };
            Some(join(format!("model.disc_{i}.model.layer_{j}{seq}.{leaf}")))
        }
        _ => None,
    }
}

/// Keys a checkpoint may contain that are not parameters of this implementation and carry no
/// information it needs: BatchNorm's step counter, and the MiDashengLM front end's
/// non-persistent STFT window / mel table should a future file store them.
fn is_ignorable(key: &str) -> bool {
    key.ends_with("num_batches_tracked")
        || key.starts_with("semantic_encoder.encoder.front_end.")
        || key.contains("spectrogram_window")
        || key.contains("melscale_fbanks")
}

/// Constant buffers of the official layout, handled by [`load_buffers`].
const AC_WINDOW: &str = "dasheng_tokenizer.encoder.front_end.mel_spec.spectrogram.window";
const AC_FB: &str = "dasheng_tokenizer.encoder.front_end.mel_spec.mel_scale.fb";
const ISTFT_WINDOW: &str = "dasheng_tokenizer.decoder.head.istft.window";

/// Read access to the tensors of one or more files, by PyTorch key.
pub struct TensorSource {
    files: Vec<SourceFile>,
    /// PyTorch key → (file index, key inside that file).
    index: BTreeMap<String, (usize, String)>,
}

enum SourceFile {
    Pytorch {
        path: PathBuf,
        tensors: HashMap<String, TensorSnapshot>,
        /// Size of the file: no tensor can hold more bytes.
        len: u64,
    },
    Safetensors {
        path: PathBuf,
        map: memmap2::Mmap,
        header_len: usize,
        tensors: HashMap<String, SafeInfo>,
    },
}

struct SafeInfo {
    dtype: safetensors::Dtype,
    shape: Vec<usize>,
    offsets: (usize, usize),
}

/// Shape and dtype of a stored tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// PyTorch shape.
    pub shape: Vec<usize>,
    /// Element type name (e.g. `F32`).
    pub dtype: String,
    float: bool,
}

impl SourceFile {
    fn path(&self) -> &Path {
        match self {
            SourceFile::Pytorch { path, .. } | SourceFile::Safetensors { path, .. } => path,
        }
    }

    fn open(path: &Path) -> Result<Self, CheckpointError> {
        let meta = std::fs::metadata(path).map_err(|e| CheckpointError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if meta.is_dir() {
            return Err(CheckpointError::Io {
                path: path.to_path_buf(),
                message: "is a directory".into(),
            });
        }
        let mut magic = [0u8; 9];
        {
            use std::io::Read;
            let mut f = File::open(path).map_err(|e| CheckpointError::Io {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            let n = f.read(&mut magic).map_err(|e| CheckpointError::Io {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            if n < 9 {
                return Err(CheckpointError::Format {
                    path: path.to_path_buf(),
                    message: format!("file is only {n} bytes long"),
                });
            }
        }
        let format_err = |message: String| CheckpointError::Format {
            path: path.to_path_buf(),
            message,
        };
        // safetensors: an 8-byte header length, then the JSON header; zip (torch ≥ 1.6): "PK";
        // legacy torch pickle: protocol opcode 0x80
        let safetensors = magic[8] == b'{';
        if !safetensors && (&magic[..2] == b"PK" || magic[0] == 0x80) {
            if &magic[..2] == b"PK" {
                verify_zip(path).map_err(format_err)?;
            } else {
                verify_legacy_pickles(path).map_err(format_err)?;
            }
            let reader = std::panic::catch_unwind(|| PytorchReader::new(path))
                .map_err(|_| format_err("the reader crashed on this file".into()))?
                .map_err(|e| format_err(one_line(&e.to_string())))?;
            Ok(SourceFile::Pytorch {
                path: path.to_path_buf(),
                tensors: reader.into_tensors(),
                len: meta.len(),
            })
        } else {
            let file = File::open(path).map_err(|e| CheckpointError::Io {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            // SAFETY: the map is read-only and lives as long as the source; the file is not
            // expected to change while the model loads (as with any memory-mapped weights).
            let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| CheckpointError::Io {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
            let (header_len, metadata) = safetensors::SafeTensors::read_metadata(&map)
                .map_err(|e| format_err(format!("neither a PyTorch zip nor safetensors ({e})")))?;
            let mut tensors = HashMap::new();
            for (name, info) in metadata.tensors() {
                tensors.insert(
                    name.clone(),
                    SafeInfo {
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        offsets: info.data_offsets,
                    },
                );
            }
            Ok(SourceFile::Safetensors {
                path: path.to_path_buf(),
                map,
                header_len: header_len + 8,
                tensors,
            })
        }
    }

    fn keys(&self) -> Vec<String> {
        match self {
            SourceFile::Pytorch { tensors, .. } => tensors.keys().cloned().collect(),
            SourceFile::Safetensors { tensors, .. } => tensors.keys().cloned().collect(),
        }
    }

    fn info(&self, key: &str) -> Option<TensorInfo> {
        match self {
            SourceFile::Pytorch { tensors, .. } => tensors.get(key).map(|s| TensorInfo {
                shape: s.shape.as_slice().to_vec(),
                dtype: format!("{:?}", s.dtype),
                float: matches!(s.dtype, DType::F32 | DType::F64 | DType::F16 | DType::BF16),
            }),
            SourceFile::Safetensors { tensors, .. } => tensors.get(key).map(|s| TensorInfo {
                shape: s.shape.clone(),
                dtype: format!("{:?}", s.dtype),
                float: matches!(
                    s.dtype,
                    safetensors::Dtype::F32
                        | safetensors::Dtype::F64
                        | safetensors::Dtype::F16
                        | safetensors::Dtype::BF16
                ),
            }),
        }
    }

    /// Values as f32 (float dtypes converted), row-major in the stored layout.
    fn read_f32(&self, key: &str) -> Result<Vec<f32>, String> {
        match self {
            SourceFile::Pytorch { tensors, len, .. } => {
                let snap = tensors.get(key).ok_or("absent")?;
                // the reader allocates what the pickle claims: check it against the file first
                let bytes = snap
                    .shape
                    .as_slice()
                    .iter()
                    .try_fold(snap.dtype.size() as u64, |a, &d| a.checked_mul(d as u64));
                if bytes.is_none_or(|b| b > *len) {
                    return Err(format!(
                        "shape {:?} ({:?}) needs more bytes than the file holds",
                        snap.shape.as_slice(),
                        snap.dtype
                    ));
                }
                // the third-party reader may panic on malformed data: an error, not a crash
                let data =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| snap.to_data()))
                        .map_err(|_| "the reader crashed on this tensor's data".to_string())?
                        .map_err(|e| e.to_string())?;
                data.convert::<f32>()
                    .into_vec::<f32>()
                    .map_err(|e| format!("{e:?}"))
            }
            SourceFile::Safetensors {
                map,
                header_len,
                tensors,
                ..
            } => {
                let info = tensors.get(key).ok_or("absent")?;
                let bytes = map
                    .get(header_len + info.offsets.0..header_len + info.offsets.1)
                    .ok_or("data offsets beyond the end of the file")?;
                decode_safetensors(info.dtype, bytes)
            }
        }
    }
}

/// Check a PyTorch zip checkpoint end to end: the archive's directory, and the CRC-32 of every
/// entry (the tensor reader reads storages by offset, without checksums, so a flipped byte in
/// the weights would otherwise load silently). One sequential read of the file.
fn verify_zip(path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::with_capacity(1 << 20, file))
        .map_err(|e| {
            format!(
                "corrupt or truncated zip archive ({})",
                one_line(&e.to_string())
            )
        })?;
    for i in 0..archive.len() {
        let mut entry = archive
            .by_index(i)
            .map_err(|e| format!("corrupt zip entry #{i} ({})", one_line(&e.to_string())))?;
        let name = entry.name().to_string();
        if entry.data_start().is_none() {
            return Err(format!("corrupt zip entry {name} (no data offset)"));
        }
        let damaged = |e: std::io::Error| {
            format!(
                "corrupt zip entry {name} ({}); the file is damaged",
                one_line(&e.to_string())
            )
        };
        if name.ends_with(".pkl") {
            let mut pickle = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut pickle).map_err(damaged)?;
            check_pickle(&pickle, 0).map_err(|e| format!("corrupt pickle {name}: {e}"))?;
        } else {
            std::io::copy(&mut entry, &mut std::io::sink()).map_err(damaged)?;
        }
    }
    Ok(())
}

/// The pickles at the start of a non-zip PyTorch file (the legacy format's five, or one plain
/// pickle) are well formed: see [`check_pickle`].
fn verify_legacy_pickles(path: &Path) -> Result<(), String> {
    let file = File::open(path).map_err(|e| e.to_string())?;
    // SAFETY: read-only map of a file that is not modified while it is open.
    let data = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| e.to_string())?;
    const LEGACY_MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
    let legacy = data.len() >= 14 && data[2..4] == [0x8a, 0x0a] && data[4..14] == LEGACY_MAGIC;
    let mut pos = 0;
    for _ in 0..if legacy { 5 } else { 1 } {
        pos = check_pickle(&data, pos).map_err(|e| format!("corrupt pickle: {e}"))?;
    }
    Ok(())
}

/// Walk the opcodes of the pickle starting at `data[pos]` and return the position after its
/// STOP. Every argument must lie inside `data`: the third-party reader allocates the length a
/// string or bytes opcode announces before reading it, so a damaged length could otherwise ask
/// for up to 2^64 bytes and abort the process.
fn check_pickle(data: &[u8], mut pos: usize) -> Result<usize, String> {
    let need = |at: usize, n: u64| -> Result<usize, String> {
        (at as u64)
            .checked_add(n)
            .filter(|&end| end <= data.len() as u64)
            .map(|end| end as usize)
            .ok_or_else(|| format!("an argument at byte {at} runs past the end ({n} bytes)"))
    };
    let uint = |at: usize, width: usize| -> Result<u64, String> {
        let end = need(at, width as u64)?;
        Ok(data[at..end]
            .iter()
            .rev()
            .fold(0u64, |v, &b| (v << 8) | u64::from(b)))
    };
    let line = |at: usize| -> Result<usize, String> {
        data.get(at..)
            .and_then(|rest| rest.iter().position(|&b| b == b'\n'))
            .map(|i| at + i + 1)
            .ok_or_else(|| format!("unterminated text argument at byte {at}"))
    };
    loop {
        let Some(&op) = data.get(pos) else {
            return Err("the pickle ends without STOP".into());
        };
        let at = pos + 1;
        pos = match op {
            b'.' => return Ok(at),
            // no argument
            b'('
            | b')'
            | b'0'
            | b'1'
            | b'2'
            | b'N'
            | b'R'
            | b'b'
            | b'a'
            | b'e'
            | b'd'
            | b'}'
            | b']'
            | b'l'
            | b's'
            | b'u'
            | b't'
            | b'Q'
            | b'o'
            | 0x81
            | 0x85..=0x89
            | 0x8f..=0x94
            | 0x97
            | 0x98 => at,
            // fixed-size arguments
            b'K' | b'h' | b'q' | 0x80 | 0x82 => need(at, 1)?,
            b'M' | 0x83 => need(at, 2)?,
            b'J' | b'j' | b'r' | 0x84 => need(at, 4)?,
            b'G' | 0x95 => need(at, 8)?,
            // newline-terminated arguments
            b'I' | b'L' | b'F' | b'S' | b'V' | b'P' | b'g' | b'p' => line(at)?,
            b'c' | b'i' => line(line(at)?)?,
            // length-prefixed arguments
            b'U' | b'C' | 0x8a | 0x8c => need(at + 1, uint(at, 1)?)?,
            b'T' | b'X' | b'B' | 0x8b => need(at + 4, uint(at, 4)?)?,
            0x8d | 0x8e | 0x96 => need(at + 8, uint(at, 8)?)?,
            other => return Err(format!("unknown opcode 0x{other:02x} at byte {pos}")),
        };
    }
}

fn decode_safetensors(dtype: safetensors::Dtype, bytes: &[u8]) -> Result<Vec<f32>, String> {
    use safetensors::Dtype as D;
    let le2 = |c: &[u8]| u16::from_le_bytes([c[0], c[1]]);
    Ok(match dtype {
        D::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        D::F64 => bytes
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")) as f32)
            .collect(),
        D::F16 => bytes
            .chunks_exact(2)
            .map(|c| burn::tensor::f16::from_bits(le2(c)).to_f32())
            .collect(),
        D::BF16 => bytes
            .chunks_exact(2)
            .map(|c| burn::tensor::bf16::from_bits(le2(c)).to_f32())
            .collect(),
        other => return Err(format!("unsupported dtype {other:?}")),
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Default for TensorSource {
    fn default() -> Self {
        Self::new()
    }
}

impl TensorSource {
    /// An empty source, to [`add`](Self::add) files to.
    pub fn new() -> Self {
        Self {
            files: Vec::new(),
            index: BTreeMap::new(),
        }
    }

    /// Open one file. A common `state_dict.` prefix (the `{"state_dict": …}` wrapping) is removed;
    /// `prefix` is then prepended so that keys are full `AudioVAE` names.
    pub fn open(path: impl AsRef<Path>, prefix: &str) -> Result<Self, CheckpointError> {
        let mut s = Self::new();
        s.add(path.as_ref(), |k| Some(format!("{prefix}{k}")))?;
        Ok(s)
    }

    /// Add a file whose keys are mapped by `rename` (keys mapped to `None` are skipped). A
    /// common `state_dict.` prefix is removed first.
    pub fn add(
        &mut self,
        path: &Path,
        rename: impl Fn(&str) -> Option<String>,
    ) -> Result<(), CheckpointError> {
        let file = SourceFile::open(path)?;
        let keys = file.keys();
        let wrapped = !keys.is_empty() && keys.iter().all(|k| k.starts_with("state_dict."));
        let i = self.files.len();
        for k in keys {
            let inner = if wrapped {
                &k["state_dict.".len()..]
            } else {
                &k[..]
            };
            if let Some(full) = rename(inner) {
                self.index.insert(full, (i, k.clone()));
            }
        }
        self.files.push(file);
        Ok(())
    }

    /// All keys (full `AudioVAE` names).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.index.keys().map(String::as_str)
    }

    /// Whether a key exists.
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Shape and dtype of a key.
    pub fn info(&self, key: &str) -> Option<TensorInfo> {
        let (i, k) = self.index.get(key)?;
        self.files[*i].info(k)
    }

    /// Values of a key as f32.
    pub fn read_f32(&self, key: &str) -> Result<Vec<f32>, String> {
        let (i, k) = self.index.get(key).ok_or("absent")?;
        self.files[*i].read_f32(k)
    }

    /// The file a key comes from.
    pub fn file_of(&self, key: &str) -> Option<&Path> {
        self.index.get(key).map(|(i, _)| self.files[*i].path())
    }

    /// The files, in the order they were added.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.files.iter().map(|f| f.path().to_path_buf()).collect()
    }

    /// Number of files.
    pub fn num_files(&self) -> usize {
        self.files.len()
    }
}

/// A path-aware mapper that replaces every float parameter by the checkpoint tensor named by
/// [`torch_key`], without running the parameter's initialiser.
struct Loader<'a> {
    source: &'a TensorSource,
    stack: Vec<(String, String)>,
    used: HashSet<String>,
    problems: Vec<Problem>,
}

impl<B: Backend> ModuleMapper<B> for Loader<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.stack
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.stack.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let path: Vec<&str> = self.stack.iter().map(|(n, _)| n.as_str()).collect();
        let owner = self
            .stack
            .last()
            .map(|(_, c)| c.trim_start_matches("Struct:"))
            .unwrap_or("");
        let (key, layout) = torch_key(&path, owner);
        let expected: Vec<usize> = {
            let d = param.lazy_shape().as_slice().to_vec();
            match layout {
                Layout::Same => d,
                Layout::Transposed => d.into_iter().rev().collect(),
            }
        };
        let Some(info) = self.source.info(&key) else {
            self.problems.push(Problem::Missing(key));
            return param;
        };
        self.used.insert(key.clone());
        if !info.float {
            self.problems.push(Problem::Dtype {
                key,
                found: info.dtype,
            });
            return param;
        }
        if info.shape != expected {
            self.problems.push(Problem::Shape {
                key,
                expected,
                found: info.shape,
            });
            return param;
        }
        if !self.problems.is_empty() {
            // Already failing: check the rest without reading data.
            return param;
        }
        let values = match self.source.read_f32(&key) {
            Ok(v) => v,
            Err(message) => {
                self.problems.push(Problem::Unreadable { key, message });
                return param;
            }
        };
        if values.iter().any(|v| !v.is_finite()) {
            self.problems.push(Problem::NonFinite { key });
            return param;
        }
        let shape: Vec<usize> = param.lazy_shape().as_slice().to_vec();
        let values = match layout {
            Layout::Same => values,
            Layout::Transposed => transpose(&values, info.shape[0], info.shape[1]),
        };
        let device = param.lazy_device();
        let tensor = Tensor::<B, D>::from_data(TensorData::new(values, shape), &device);
        Param::initialized(param.id, tensor.require_grad())
    }
}

/// Row-major `[rows, cols]` → row-major `[cols, rows]`. Each output row is written contiguously from a
/// 16-row strip of the input that stays in cache (a plain element loop over a 5120 × 1280 matrix
/// misses the cache on every write and made loading seconds slower).
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const STRIP: usize = 16;
    assert_eq!(
        v.len(),
        rows * cols,
        "transpose: {rows} x {cols} != {}",
        v.len()
    );
    let mut out = vec![0f32; v.len()];
    for c0 in (0..cols).step_by(STRIP) {
        let c1 = (c0 + STRIP).min(cols);
        for r0 in (0..rows).step_by(STRIP) {
            let r1 = (r0 + STRIP).min(rows);
            for c in c0..c1 {
                let dst = &mut out[c * rows + r0..c * rows + r1];
                for (d, r) in dst.iter_mut().zip(r0..r1) {
                    *d = v[r * cols + c];
                }
            }
        }
    }
    out
}

/// Load every float parameter of `model` from `source` by its [`torch_key`], strictly: returns the
/// module, the keys used and every problem found (missing, mis-shaped, non-float or unreadable
/// tensors). Parameters are replaced without running their initialisers, so building a model
/// and loading it costs one copy of the weights. Unexpected keys are for the caller to judge
/// (compare [`TensorSource::keys`] with the keys used).
pub fn load_module<B: Backend, M: Module<B>>(
    model: M,
    source: &TensorSource,
) -> (M, HashSet<String>, Vec<Problem>) {
    let mut loader = Loader {
        source,
        stack: Vec::new(),
        used: HashSet::new(),
        problems: Vec::new(),
    };
    let model = model.map(&mut loader);
    (model, loader.used, loader.problems)
}

/// The acoustic filterbank buffer (loaded) and the two windows (verified to be the periodic
/// Hann windows this implementation uses).
fn load_buffers<B: Backend>(
    mut model: Losatok<B>,
    source: &TensorSource,
    used: &mut HashSet<String>,
    problems: &mut Vec<Problem>,
) -> Losatok<B> {
    let n_fft_ac = 1024;
    let ac = &model.dasheng_tokenizer.encoder.front_end;
    let fb_shape = ac.filterbank().dims().to_vec();
    let istft_n = model.dasheng_tokenizer.decoder.head.out.weight.dims()[1] - 2;
    for (key, n) in [(AC_WINDOW, n_fft_ac), (ISTFT_WINDOW, istft_n)] {
        let Some(info) = source.info(key) else {
            continue; // absent buffers are recomputed
        };
        used.insert(key.to_string());
        match source.read_f32(key) {
            Ok(w) if info.shape == [n] => {
                let hann = losatok_dsp::hann_periodic(n);
                let d = w
                    .iter()
                    .zip(&hann)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                if d > 1e-6 {
                    problems.push(Problem::Buffer {
                        key: key.into(),
                        message: format!("not a periodic Hann window (max |Δ| {d:.2e})"),
                    });
                }
            }
            Ok(_) => problems.push(Problem::Shape {
                key: key.into(),
                expected: vec![n],
                found: info.shape,
            }),
            Err(message) => problems.push(Problem::Unreadable {
                key: key.into(),
                message,
            }),
        }
    }
    if let Some(info) = source.info(AC_FB) {
        used.insert(AC_FB.to_string());
        if info.shape != fb_shape {
            problems.push(Problem::Shape {
                key: AC_FB.into(),
                expected: fb_shape,
                found: info.shape,
            });
        } else {
            match source.read_f32(AC_FB) {
                Ok(v) if v.iter().any(|x| !x.is_finite()) => {
                    problems.push(Problem::NonFinite { key: AC_FB.into() })
                }
                Ok(v) => {
                    let device = model.fc_a.weight.device();
                    let fb = Tensor::from_data(TensorData::new(v, fb_shape), &device);
                    model.dasheng_tokenizer.encoder.front_end = model
                        .dasheng_tokenizer
                        .encoder
                        .front_end
                        .with_filterbank(fb);
                }
                Err(message) => problems.push(Problem::Unreadable {
                    key: AC_FB.into(),
                    message,
                }),
            }
        }
    }
    model
}

/// What a load found and did.
#[derive(Clone, Debug, Default)]
pub struct LoadReport {
    /// Files read.
    pub files: Vec<PathBuf>,
    /// Number of tensors loaded.
    pub tensors: usize,
    /// Whether the semantic encoder has qkv biases (detected from the keys).
    pub qkv_bias: bool,
    /// Whether its blocks have layer scale (detected from the keys).
    pub layer_scale: bool,
    /// SemBo hidden width (read from the weights).
    pub sembo_hidden_dim: usize,
}

const SEM: &str = "semantic_encoder.";

/// Adjust the parts of `config` that the reference decides from the weights: qkv bias and layer
/// scale of the semantic encoder (from the keys) and the SemBo hidden width (from the shapes).
pub fn adapt_config(config: &LosatokConfig, source: &TensorSource) -> LosatokConfig {
    adapt_config_at(config, source, SEM)
}

/// [`adapt_config`] for a source whose semantic-encoder keys start with `prefix`.
fn adapt_config_at(config: &LosatokConfig, source: &TensorSource, prefix: &str) -> LosatokConfig {
    let mut cfg = config.clone();
    let b0 = format!("{prefix}encoder.blocks.0.");
    if source.contains(&format!("{b0}attn.qkv.weight")) {
        cfg.audio_encoder.qkv_bias = source.contains(&format!("{b0}attn.qkv.bias"));
        let ls = source.contains(&format!("{b0}ls1.gamma"));
        cfg.audio_encoder.init_values = if ls {
            Some(cfg.audio_encoder.init_values.unwrap_or(1e-5))
        } else {
            None
        };
    }
    if let Some(info) = source.info(&format!("{prefix}bottleneck.downsample.0.weight")) {
        if info.shape.len() == 2 {
            cfg.sembo_hidden_dim = info.shape[0];
        }
    }
    cfg
}

/// Describe, for an error message, how the checkpoint's sizes differ from the config's.
fn size_hint(config: &LosatokConfig, source: &TensorSource) -> Option<String> {
    size_hint_at(config, source, SEM)
}

/// [`size_hint`] for a source whose semantic-encoder keys start with `prefix`.
fn size_hint_at(config: &LosatokConfig, source: &TensorSource, prefix: &str) -> Option<String> {
    let depth = (0..)
        .take_while(|i| source.contains(&format!("{prefix}encoder.blocks.{i}.norm1.weight")))
        .count();
    let encoder_width = source
        .info(&format!("{prefix}encoder.blocks.0.norm1.weight"))
        .map(|i| i.shape)
        .unwrap_or_default();
    let vocos = (0..)
        .take_while(|i| {
            source.contains(&format!(
                "dasheng_tokenizer.decoder.backbone.convnext.{i}.gamma"
            ))
        })
        .count();
    let width = source
        .info("fc_a.weight")
        .map(|i| i.shape)
        .unwrap_or_default();
    let mut hints = Vec::new();
    if encoder_width.len() == 1 && encoder_width[0] != config.audio_encoder.embed_dim {
        hints.push(format!(
            "a semantic encoder of width {} (config: {})",
            encoder_width[0], config.audio_encoder.embed_dim
        ));
    }
    if depth > 0 && depth != config.audio_encoder.depth {
        hints.push(format!(
            "{depth} semantic blocks (config: {})",
            config.audio_encoder.depth
        ));
    }
    if vocos > 0 && vocos != config.tokenizer.decoder_depth {
        hints.push(format!(
            "{vocos} Vocos blocks (config: {})",
            config.tokenizer.decoder_depth
        ));
    }
    if width.len() == 2
        && (width[1] != config.tokenizer.embed_dim || width[0] != config.tokenizer.decoder_dim)
    {
        hints.push(format!(
            "embed_dim {} / latent {} (config: {} / {})",
            width[1], width[0], config.tokenizer.embed_dim, config.tokenizer.decoder_dim
        ));
    }
    (!hints.is_empty()).then(|| {
        format!(
            "the checkpoint has {}; pass the config it was trained with (--config)",
            hints.join(", ")
        )
    })
}

/// Open a LoSATok checkpoint (raw or `{"state_dict": …}`-wrapped `.pth`, or a safetensors export)
/// and, if it lacks the semantic encoder, the `semantic_encoder.pth` named by the config.
pub fn open_losatok_checkpoint(
    path: &Path,
    config: &LosatokConfig,
) -> Result<TensorSource, CheckpointError> {
    let mut source = TensorSource::open(path, "")?;
    let has_vae = source.contains("fc_mu.weight")
        || source.keys().any(|k| k.starts_with("dasheng_tokenizer."));
    if !has_vae {
        let looks_semantic = source.keys().any(|k| k.starts_with("bottleneck."))
            || source.keys().any(|k| k.starts_with("encoder.blocks."));
        let what = if looks_semantic {
            "this is a semantic-encoder checkpoint (encoder.*, bottleneck.*)"
        } else if source.keys().any(|k| k.starts_with("audio_encoder.")) {
            "this is a MiDashengLM checkpoint (audio_encoder.*)"
        } else {
            "no LoSATok tensors (fc_mu.*, dasheng_tokenizer.*) found"
        };
        return Err(CheckpointError::WrongKind {
            path: path.to_path_buf(),
            message: format!(
                "{what}; inference needs a LoSATok checkpoint such as losatok_kl1e-2.pth"
            ),
        });
    }
    if !source.keys().any(|k| k.starts_with(SEM)) {
        match &config.semantic_encoder_path {
            Some(p) if p.exists() => {
                source.add(p, |k| Some(format!("{SEM}{k}")))?;
            }
            Some(p) => {
                return Err(CheckpointError::WrongKind {
                    path: path.to_path_buf(),
                    message: format!(
                        "it has no semantic_encoder.* tensors and the config's semantic_encoder_path {} does not exist",
                        p.display()
                    ),
                })
            }
            None => {
                return Err(CheckpointError::WrongKind {
                    path: path.to_path_buf(),
                    message: "it has no semantic_encoder.* tensors and the config names no semantic_encoder_path".into(),
                })
            }
        }
    }
    Ok(source)
}

/// Build the model from `config` and load every tensor from `source` strictly. qkv bias, layer
/// scale and the SemBo width are taken from the checkpoint ([`adapt_config`]).
pub fn load_losatok<B: Backend>(
    config: &LosatokConfig,
    source: &TensorSource,
    display_path: &Path,
    device: &B::Device,
) -> Result<(Losatok<B>, LosatokConfig, LoadReport), CheckpointError> {
    let cfg = adapt_config(config, source);
    // parameters are created lazily: building the model allocates no weights, so every shape
    // is compared with the checkpoint before anything large is allocated (and the config's
    // size is bounded by its validation)
    let model = cfg.init::<B>(device);
    let (model, mut used, mut problems) = load_module(model, source);
    let model = load_buffers(model, source, &mut used, &mut problems);
    for k in source.keys() {
        if !used.contains(k) && !is_ignorable(k) {
            problems.push(Problem::Unexpected(k.to_string()));
        }
    }
    if !problems.is_empty() {
        let mut summary = summarize(&problems);
        if let Some(hint) = size_hint(&cfg, source) {
            summary = format!("{hint} ({summary})");
        }
        return Err(CheckpointError::Mismatch {
            path: display_path.to_path_buf(),
            summary,
            problems,
        });
    }
    let report = LoadReport {
        files: source.paths(),
        tensors: used.len(),
        qkv_bias: cfg.audio_encoder.qkv_bias,
        layer_scale: cfg.audio_encoder.init_values.is_some(),
        sembo_hidden_dim: cfg.sembo_hidden_dim,
    };
    Ok((model, cfg, report))
}

/// Every parameter of a module with its PyTorch key, layout and shape (Burn layout): the export
/// side of [`torch_key`].
pub fn torch_names<B: Backend, M: Module<B>>(
    module: &M,
) -> Vec<(String, Layout, ParamId, Vec<usize>)> {
    struct Names {
        stack: Vec<(String, String)>,
        out: Vec<(String, Layout, ParamId, Vec<usize>)>,
    }
    impl<B: Backend> ModuleVisitor<B> for Names {
        fn enter_module(&mut self, name: &str, container_type: &str) {
            self.stack
                .push((name.to_string(), container_type.to_string()));
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.stack.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            let path: Vec<&str> = self.stack.iter().map(|(n, _)| n.as_str()).collect();
            let owner = self
                .stack
                .last()
                .map(|(_, c)| c.trim_start_matches("Struct:"))
                .unwrap_or("");
            let (key, layout) = torch_key(&path, owner);
            self.out.push((
                key,
                layout,
                param.id,
                param.lazy_shape().as_slice().to_vec(),
            ));
        }
    }
    let mut v = Names {
        stack: Vec::new(),
        out: Vec::new(),
    };
    module.visit(&mut v);
    v.out
}

/// Open MiDashengLM's own weights: a folder with `model.safetensors.index.json` (or a single
/// `model.safetensors`), or the index file itself. Only the shards holding `audio_encoder.*` are
/// opened (memory-mapped: the 7B language model is never read), and those keys are renamed to
/// `encoder.*`, the names of `semantic_encoder.pth` (see [`load_semantic_encoder`]).
pub fn open_midashenglm(path: &Path) -> Result<TensorSource, CheckpointError> {
    let (dir, index) = if path.is_dir() {
        (
            path.to_path_buf(),
            path.join("model.safetensors.index.json"),
        )
    } else {
        (
            path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            path.to_path_buf(),
        )
    };
    let rename = |k: &str| {
        k.strip_prefix("audio_encoder.")
            .map(|rest| format!("encoder.{rest}"))
    };
    let mut source = TensorSource::new();
    if index.extension().is_some_and(|e| e == "json") && index.exists() {
        let text = std::fs::read_to_string(&index).map_err(|e| CheckpointError::Io {
            path: index.clone(),
            message: e.to_string(),
        })?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| CheckpointError::Format {
                path: index.clone(),
                message: format!("not a safetensors index ({e})"),
            })?;
        let map = json["weight_map"]
            .as_object()
            .ok_or_else(|| CheckpointError::Format {
                path: index.clone(),
                message: "no weight_map".into(),
            })?;
        let mut shards: Vec<&str> = map
            .iter()
            .filter(|(k, _)| k.starts_with("audio_encoder."))
            .filter_map(|(_, v)| v.as_str())
            .collect();
        shards.sort();
        shards.dedup();
        for shard in shards {
            source.add(&dir.join(shard), rename)?;
        }
    } else {
        let file = if path.is_dir() {
            dir.join("model.safetensors")
        } else {
            path.to_path_buf()
        };
        source.add(&file, rename)?;
    }
    if source.keys().next().is_none() {
        return Err(CheckpointError::WrongKind {
            path: path.to_path_buf(),
            message: "no audio_encoder.* tensors (is this MiDashengLM?)".into(),
        });
    }
    Ok(source)
}

/// Open the semantic encoder of any checkpoint that has one, with the key names of
/// `semantic_encoder.pth` (`encoder.*`, `bottleneck.*`): a `semantic_encoder.pth` itself, a
/// LoSATok checkpoint or export (its `semantic_encoder.*` part), or MiDashengLM's safetensors
/// (a folder or `*.index.json`; encoder only).
pub fn open_semantic_source(path: &Path) -> Result<TensorSource, CheckpointError> {
    if path.is_dir() || path.extension().is_some_and(|e| e == "json") {
        return open_midashenglm(path);
    }
    let mut source = TensorSource::open(path, "")?;
    if source.keys().any(|k| k.starts_with(SEM)) {
        source = TensorSource::new();
        source.add(path, |k| k.strip_prefix(SEM).map(String::from))?;
    } else if source.keys().any(|k| k.starts_with("audio_encoder.")) {
        return open_midashenglm(path);
    }
    if !source.contains("encoder.patch_embed.proj.weight") {
        return Err(CheckpointError::WrongKind {
            path: path.to_path_buf(),
            message: "no MiDashengLM audio encoder (encoder.patch_embed.proj.weight) found".into(),
        });
    }
    Ok(source)
}

/// Load the frozen semantic encoder strictly from a source with `semantic_encoder.pth` names
/// (see [`open_semantic_source`]). With `with_bottleneck` false, SemBo is not read and keeps
/// fresh weights (stage 1 trains it); otherwise it must be present. qkv bias, layer scale and
/// (with the bottleneck) the SemBo width follow the checkpoint.
pub fn load_semantic_encoder<B: Backend>(
    config: &LosatokConfig,
    source: &TensorSource,
    with_bottleneck: bool,
    display_path: &Path,
    device: &B::Device,
) -> Result<(crate::losatok::SemanticEncoder<B>, LosatokConfig), CheckpointError> {
    let cfg = adapt_config_at(config, source, "");
    let sem = crate::losatok::SemanticEncoder {
        encoder: cfg.audio_encoder.init::<B>(device),
        bottleneck: crate::sembo::SemBo::new(
            cfg.tokenizer.embed_dim,
            cfg.sembo_hidden_dim,
            cfg.tokenizer.decoder_dim,
            device,
        ),
    };
    let (sem, used, problems) = load_module(sem, source);
    let mut problems: Vec<Problem> = problems
        .into_iter()
        .filter(|p| {
            with_bottleneck || !matches!(p, Problem::Missing(k) if k.starts_with("bottleneck."))
        })
        .collect();
    for k in source.keys() {
        let skipped = !with_bottleneck && k.starts_with("bottleneck.");
        if !used.contains(k) && !skipped && !is_ignorable(k) && !k.starts_with("encoder.front_end.")
        {
            problems.push(Problem::Unexpected(k.to_string()));
        }
    }
    if !problems.is_empty() {
        let mut summary = summarize(&problems);
        if let Some(hint) = size_hint_at(&cfg, source, "") {
            summary = format!("{hint} ({summary})");
        }
        return Err(CheckpointError::Mismatch {
            path: display_path.to_path_buf(),
            summary,
            problems,
        });
    }
    Ok((sem, cfg))
}

/// A tensor written after a module's parameters (a buffer of the reference state dict).
struct ExtraTensor {
    name: String,
    dtype: &'static str,
    shape: Vec<usize>,
    bytes: Vec<u8>,
}

fn f32_tensor(name: &str, shape: Vec<usize>, values: Vec<f32>) -> ExtraTensor {
    ExtraTensor {
        name: name.to_string(),
        dtype: "F32",
        shape,
        bytes: values.into_iter().flat_map(|x| x.to_le_bytes()).collect(),
    }
}

fn batches_tracked(name: &str) -> ExtraTensor {
    ExtraTensor {
        name: name.to_string(),
        dtype: "I64",
        shape: Vec::new(),
        bytes: 0i64.to_le_bytes().to_vec(),
    }
}

/// Write `model` as a safetensors file in the reference's `AudioVAE.state_dict()` layout: every
/// parameter under its PyTorch name and layout (Linear weights back to `[out, in]`), plus the
/// buffers the reference keeps (the acoustic STFT window and mel filterbank, the ISTFT window,
/// and `init_bn.num_batches_tracked`), so that
/// `AudioVAE.load_state_dict(safetensors.torch.load_file(path), strict=True)` accepts it.
/// Streamed tensor by tensor and written atomically (temporary file, then rename).
pub fn export_safetensors<B: Backend>(
    model: &Losatok<B>,
    path: &Path,
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let fb = model.dasheng_tokenizer.encoder.front_end.filterbank();
    let fb_shape = fb.dims().to_vec();
    let fb = fb
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("float data");
    let n_istft = model.dasheng_tokenizer.decoder.head.out.weight.dims()[1] - 2;
    let n_ac = model.dasheng_tokenizer.encoder.front_end.n_fft();
    let extra = vec![
        f32_tensor(AC_WINDOW, vec![n_ac], losatok_dsp::hann_periodic(n_ac)),
        f32_tensor(AC_FB, fb_shape, fb),
        f32_tensor(
            ISTFT_WINDOW,
            vec![n_istft],
            losatok_dsp::hann_periodic(n_istft),
        ),
        batches_tracked("semantic_encoder.encoder.init_bn.num_batches_tracked"),
    ];
    write_module_safetensors(model, extra, path, metadata)
}

/// Write a semantic encoder (MiDashengLM encoder and SemBo) in the layout of
/// `semantic_encoder.pth`'s state dict (`encoder.*`, `bottleneck.*`, with
/// `encoder.init_bn.num_batches_tracked`): the output of stage 1, which stage 2 and inference
/// load (`torch.save({"state_dict": safetensors.torch.load_file(path)}, "semantic_encoder.pth")`
/// makes the reference's file of it).
pub fn export_semantic_safetensors<B: Backend>(
    semantic: &crate::losatok::SemanticEncoder<B>,
    path: &Path,
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let extra = vec![batches_tracked("encoder.init_bn.num_batches_tracked")];
    write_module_safetensors(semantic, extra, path, metadata)
}

/// The safetensors writer behind the exports: a module's parameters by [`torch_names`] (in
/// visiting order, one tensor in memory at a time), then `extra`.
fn write_module_safetensors<B: Backend, M: Module<B>>(
    module: &M,
    extra: Vec<ExtraTensor>,
    path: &Path,
    metadata: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    use std::io::Write;
    let io = |e: std::io::Error| CheckpointError::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let params = torch_names(module);
    let mut entries: Vec<(String, &str, Vec<usize>)> = params
        .iter()
        .map(|(k, layout, _, shape)| {
            let shape = match layout {
                Layout::Same => shape.clone(),
                Layout::Transposed => shape.iter().rev().copied().collect(),
            };
            (k.clone(), "F32", shape)
        })
        .collect();
    entries.extend(
        extra
            .iter()
            .map(|e| (e.name.clone(), e.dtype, e.shape.clone())),
    );
    let mut header = serde_json::Map::new();
    if !metadata.is_empty() {
        header.insert("__metadata__".into(), serde_json::json!(metadata));
    }
    let mut offset = 0usize;
    for (name, dtype, shape) in &entries {
        let bytes = shape.iter().product::<usize>() * if *dtype == "I64" { 8 } else { 4 };
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::to_string(&header).expect("json");
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    // replacing an existing export (the caller decides whether one may be replaced)
    let mut out = losatok_fs::AtomicFile::create(path, true).map_err(|e| fs_err(path, e))?;
    let file: &mut File = out.file();
    {
        let mut w = std::io::BufWriter::new(file);
        w.write_all(&(text.len() as u64).to_le_bytes())
            .map_err(io)?;
        w.write_all(text.as_bytes()).map_err(io)?;
        struct Writer<'a, W: Write> {
            w: &'a mut W,
            layouts: std::collections::VecDeque<Layout>,
            err: Option<std::io::Error>,
        }
        impl<B: Backend, W: Write> ModuleVisitor<B> for Writer<'_, W> {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<B, D>>) {
                let layout = self.layouts.pop_front().expect("same parameters");
                if self.err.is_some() {
                    return;
                }
                let t = p.val();
                let dims = t.dims();
                let v = t
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .expect("float data");
                let v = match layout {
                    Layout::Same => v,
                    Layout::Transposed => transpose(&v, dims[0], dims[1]),
                };
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                if let Err(e) = self.w.write_all(&bytes) {
                    self.err = Some(e);
                }
            }
        }
        let mut writer = Writer {
            w: &mut w,
            layouts: params.iter().map(|(_, l, _, _)| *l).collect(),
            err: None,
        };
        module.visit(&mut writer);
        if let Some(e) = writer.err {
            return Err(io(e));
        }
        for e in &extra {
            w.write_all(&e.bytes).map_err(io)?;
        }
        w.flush().map_err(io)?;
    }
    out.commit().map_err(|e| fs_err(path, e))
}

/// A file-layer error met while writing `path`.
fn fs_err(path: &Path, e: losatok_fs::FsError) -> CheckpointError {
    CheckpointError::Write {
        path: path.to_path_buf(),
        message: match e {
            losatok_fs::FsError::Write { source, .. } => source.to_string(),
            other => other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::transpose;

    #[test]
    fn tiled_transpose_matches_the_definition_on_ragged_sizes() {
        for (rows, cols) in [(1, 1), (1, 7), (7, 1), (33, 65), (64, 32), (100, 3)] {
            let v: Vec<f32> = (0..rows * cols).map(|i| i as f32).collect();
            let t = transpose(&v, rows, cols);
            for r in 0..rows {
                for c in 0..cols {
                    assert_eq!(
                        t[c * rows + r],
                        v[r * cols + c],
                        "{rows}x{cols} at ({r},{c})"
                    );
                }
            }
        }
    }
}
