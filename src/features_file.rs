//! Feature and latent files: safetensors with the reference's tensor names.
//!
//! Each tensor is float32 with the batch dimension kept, `[1, T, D]`, named exactly as the
//! reference's `encode` output (`z`, `mu`, `logvar`, `semantic_emb`, …). The `__metadata__`
//! holds [`FORMAT`], [`FORMAT_VERSION`], the sample rate, the frame rate, the number of 16 kHz
//! samples the features were computed from, the sampling mode and the checkpoint's SHA-256.
//!
//! [`FeatureWriter`] appends frames as they are computed (each tensor spooled to its own
//! temporary file next to the destination) and assembles the file atomically at the end
//! (through [`losatok_fs::AtomicFile`]), so memory does not grow with the length of the audio
//! and a failure, or a signal, leaves nothing behind.
//! [`FeatureFile`] memory-maps a file and reads any frame range of a tensor.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use losatok_fs::{AtomicFile, Target, TempFile};

use crate::error::Error;

/// `__metadata__["format"]` of files written here.
pub const FORMAT: &str = "losatok-features";
/// `__metadata__["format_version"]` of files written here.
pub const FORMAT_VERSION: &str = "1";

/// Descriptive metadata of a feature file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeatureMetadata {
    /// Audio sample rate (16000).
    pub sample_rate: u32,
    /// Latent frame rate (25).
    pub frame_rate: u32,
    /// 16 kHz samples the features were computed from (after any `--max-duration` cut).
    pub num_samples: u64,
    /// `"mean"` or `"seeded:<seed>"`.
    pub sampling: String,
    /// SHA-256 of the checkpoint file(s), hex.
    pub checkpoint_sha256: String,
    /// Further entries.
    pub extra: BTreeMap<String, String>,
}

impl FeatureMetadata {
    fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = self.extra.clone();
        m.insert("format".into(), FORMAT.into());
        m.insert("format_version".into(), FORMAT_VERSION.into());
        m.insert("sample_rate".into(), self.sample_rate.to_string());
        m.insert("frame_rate".into(), self.frame_rate.to_string());
        m.insert("num_samples".into(), self.num_samples.to_string());
        m.insert("sampling".into(), self.sampling.clone());
        m.insert("checkpoint_sha256".into(), self.checkpoint_sha256.clone());
        m
    }

    fn from_map(mut m: BTreeMap<String, String>) -> Self {
        let mut take = |k: &str| m.remove(k).unwrap_or_default();
        let sample_rate = take("sample_rate").parse().unwrap_or(0);
        let frame_rate = take("frame_rate").parse().unwrap_or(0);
        let num_samples = take("num_samples").parse().unwrap_or(0);
        let sampling = take("sampling");
        let checkpoint_sha256 = take("checkpoint_sha256");
        m.remove("format");
        m.remove("format_version");
        Self {
            sample_rate,
            frame_rate,
            num_samples,
            sampling,
            checkpoint_sha256,
            extra: m,
        }
    }
}

struct Spool {
    name: String,
    dim: usize,
    file: BufWriter<File>,
    /// Removes the spool file when dropped.
    _temp: TempFile,
    values: u64,
}

/// Writes a feature file frame by frame; see the module documentation.
pub struct FeatureWriter {
    dest: PathBuf,
    overwrite: bool,
    metadata: FeatureMetadata,
    spools: Vec<Spool>,
}

fn write_err(path: &Path, e: std::io::Error) -> Error {
    Error::Write {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

impl FeatureWriter {
    /// A writer for tensors `(name, D)`. Fails at once if `dest` exists and `overwrite` is
    /// false, or if its folder is not writable.
    pub fn create(
        dest: &Path,
        tensors: &[(&str, usize)],
        metadata: FeatureMetadata,
        overwrite: bool,
    ) -> Result<Self, Error> {
        // the spools sit next to the destination (its final target, through links), or in the
        // temporary folder for standard output
        let spool_dir =
            match Target::resolve(dest, overwrite).map_err(|e| Error::from_fs(dest, e))? {
                Target::Stdout => std::env::temp_dir(),
                Target::File { path, .. } => losatok_fs::temp::parent_dir(&path).to_path_buf(),
            };
        let dest_name = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "features".into());
        let mut spools = Vec::with_capacity(tensors.len());
        for &(name, dim) in tensors {
            let mut temp = TempFile::new_in(&spool_dir, &format!("{dest_name}.{name}"))
                .map_err(|e| Error::from_fs(dest, e))?;
            let file = temp.file().try_clone().map_err(|e| write_err(dest, e))?;
            spools.push(Spool {
                name: name.to_string(),
                dim,
                file: BufWriter::new(file),
                _temp: temp,
                values: 0,
            });
        }
        Ok(Self {
            dest: dest.to_path_buf(),
            overwrite,
            metadata,
            spools,
        })
    }

    /// Append frames to tensor `name` (`n·D` values, row-major).
    pub fn append(&mut self, name: &str, values: &[f32]) -> Result<(), Error> {
        let dest = self.dest.clone();
        let spool = self
            .spools
            .iter_mut()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::InvalidInput(format!("no tensor {name} in this feature file")))?;
        if !values.len().is_multiple_of(spool.dim) {
            return Err(Error::InvalidInput(format!(
                "{name}: {} values are not whole rows of {}",
                values.len(),
                spool.dim
            )));
        }
        for v in values {
            spool
                .file
                .write_all(&v.to_le_bytes())
                .map_err(|e| write_err(&dest, e))?;
        }
        spool.values += values.len() as u64;
        Ok(())
    }

    /// Set the number of samples recorded in the metadata (known at the end of a stream).
    pub fn set_num_samples(&mut self, n: u64) {
        self.metadata.num_samples = n;
    }

    /// Assemble the file next to the destination and move it into place.
    pub fn finish(self) -> Result<(), Error> {
        let dest = &self.dest;
        let frames: Vec<u64> = self
            .spools
            .iter()
            .map(|s| s.values / s.dim as u64)
            .collect();
        if frames.windows(2).any(|w| w[0] != w[1]) {
            return Err(Error::InvalidInput(
                "feature tensors have different numbers of frames".into(),
            ));
        }
        let mut header = serde_json::Map::new();
        header.insert(
            "__metadata__".into(),
            serde_json::to_value(self.metadata.to_map()).expect("string map"),
        );
        let mut offset = 0u64;
        for s in &self.spools {
            let bytes = s.values * 4;
            header.insert(
                s.name.clone(),
                serde_json::json!({
                    "dtype": "F32",
                    "shape": [1, s.values / s.dim as u64, s.dim],
                    "data_offsets": [offset, offset + bytes],
                }),
            );
            offset += bytes;
        }
        let mut text = serde_json::to_string(&header).expect("json");
        while !text.len().is_multiple_of(8) {
            text.push(' ');
        }
        let mut out =
            AtomicFile::create(dest, self.overwrite).map_err(|e| Error::from_fs(dest, e))?;
        write_assembled(&mut out, &text, self.spools, dest)?;
        out.commit().map_err(|e| Error::from_fs(dest, e))
    }
}

/// The header length, the header and every spool's data, in order.
fn write_assembled(
    out: &mut impl Write,
    header: &str,
    spools: Vec<Spool>,
    dest: &Path,
) -> Result<(), Error> {
    let mut w = BufWriter::new(out);
    w.write_all(&(header.len() as u64).to_le_bytes())
        .and_then(|_| w.write_all(header.as_bytes()))
        .map_err(|e| write_err(dest, e))?;
    for s in spools {
        let mut f = s
            .file
            .into_inner()
            .map_err(|e| write_err(dest, e.into_error()))?;
        f.seek(SeekFrom::Start(0)).map_err(|e| write_err(dest, e))?;
        std::io::copy(&mut f, &mut w).map_err(|e| write_err(dest, e))?;
    }
    w.flush().map_err(|e| write_err(dest, e))
}

/// A tensor's place in a feature file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorEntry {
    /// Shape as stored.
    pub shape: Vec<usize>,
    /// Byte range in the data section.
    offsets: (usize, usize),
}

/// A memory-mapped feature (or latent) file.
pub struct FeatureFile {
    path: PathBuf,
    map: memmap2::Mmap,
    data_start: usize,
    tensors: BTreeMap<String, TensorEntry>,
    /// The metadata as stored.
    raw_metadata: BTreeMap<String, String>,
    /// The metadata (defaults where absent).
    pub metadata: FeatureMetadata,
}

impl FeatureFile {
    /// Open and validate the header.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let bad = |message: String| Error::BadLatent {
            path: path.to_path_buf(),
            message,
        };
        let meta = std::fs::metadata(path).map_err(|e| Error::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        if meta.is_dir() {
            return Err(Error::Read {
                path: path.to_path_buf(),
                message: "is a directory".into(),
            });
        }
        let mut file = File::open(path).map_err(|e| Error::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let mut head = [0u8; 8];
        if file.read_exact(&mut head).is_err() {
            return Err(bad(format!(
                "only {} bytes, not a safetensors file",
                meta.len()
            )));
        }
        // SAFETY: read-only map of a file we do not modify while it is open.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| Error::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let (header_len, st) = safetensors::SafeTensors::read_metadata(&map)
            .map_err(|e| bad(format!("not a valid safetensors file ({e})")))?;
        let raw_metadata: BTreeMap<String, String> = st
            .metadata()
            .clone()
            .map(|m| m.into_iter().collect())
            .unwrap_or_default();
        let metadata = FeatureMetadata::from_map(raw_metadata.clone());
        let mut tensors = BTreeMap::new();
        for (name, info) in st.tensors() {
            if info.dtype != safetensors::Dtype::F32 {
                return Err(bad(format!(
                    "tensor {name} is {:?}; feature files hold float32",
                    info.dtype
                )));
            }
            tensors.insert(
                name.clone(),
                TensorEntry {
                    shape: info.shape.clone(),
                    offsets: info.data_offsets,
                },
            );
        }
        Ok(Self {
            path: path.to_path_buf(),
            map,
            data_start: 8 + header_len,
            tensors,
            raw_metadata,
            metadata,
        })
    }

    /// Checks that the metadata, where present, describes latents a model with this sample
    /// rate and frame rate decodes: `format` is [`FORMAT`] with a known version, and the rates
    /// match. Files without metadata (written by other tools) pass.
    pub fn check_metadata(&self, sample_rate: u32, frame_rate: u32) -> Result<(), Error> {
        let bad = |message: String| Error::BadLatent {
            path: self.path.clone(),
            message,
        };
        let get = |k: &str| self.raw_metadata.get(k).map(String::as_str);
        if let Some(f) = get("format") {
            if f != FORMAT {
                return Err(bad(format!(
                    "its metadata says format {f:?}, not {FORMAT:?}: not a LoSATok feature file"
                )));
            }
            if let Some(v) = get("format_version").filter(|v| *v != FORMAT_VERSION) {
                return Err(bad(format!(
                    "feature file format version {v:?} is not supported (this version reads {FORMAT_VERSION:?})"
                )));
            }
        }
        for (key, want, unit) in [
            ("sample_rate", sample_rate, "Hz"),
            ("frame_rate", frame_rate, "Hz"),
        ] {
            if let Some(v) = get(key) {
                match v.trim().parse::<u32>() {
                    Ok(n) if n == want => {}
                    Ok(n) => {
                        return Err(bad(format!(
                            "its metadata says {key} {n} {unit}; this model's is {want} {unit}"
                        )))
                    }
                    Err(_) => return Err(bad(format!("its metadata {key} {v:?} is not a number"))),
                }
            }
        }
        Ok(())
    }

    /// Names of the tensors.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// Shape of a tensor.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|t| t.shape.as_slice())
    }

    /// `(T, D)` of a `[1, T, D]` (or `[T, D]`) tensor, checking the layout.
    pub fn frames_and_dim(&self, name: &str) -> Result<(usize, usize), Error> {
        let bad = |message: String| Error::BadLatent {
            path: self.path.clone(),
            message,
        };
        let shape = self
            .shape(name)
            .ok_or_else(|| bad(format!("no tensor named {name:?}")))?;
        match *shape {
            [1, t, d] | [t, d] => Ok((t, d)),
            [b, _, _] => Err(bad(format!(
                "{name} holds a batch of {b}; one latent sequence [1, T, D] is expected"
            ))),
            _ => Err(bad(format!(
                "{name} has shape {shape:?}; [1, T, D] is expected"
            ))),
        }
    }

    /// Frames `[start, start + len)` of a `[1, T, D]` tensor, row-major.
    pub fn rows(&self, name: &str, start: usize, len: usize) -> Result<Vec<f32>, Error> {
        let (t, d) = self.frames_and_dim(name)?;
        if start.checked_add(len).is_none_or(|end| end > t) {
            return Err(Error::InvalidInput(format!(
                "frames {start}..{} beyond the {t} of {name}",
                start.saturating_add(len)
            )));
        }
        let entry = &self.tensors[name];
        let a = self.data_start + entry.offsets.0 + start * d * 4;
        let b = a + len * d * 4;
        let bytes = self.map.get(a..b).ok_or_else(|| Error::BadLatent {
            path: self.path.clone(),
            message: "data section is truncated".into(),
        })?;
        Ok(bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
