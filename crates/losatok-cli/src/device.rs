//! `--device cpu|cuda[:N]` and the backend it selects.

use anyhow::{bail, Result};

/// A parsed `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// Burn's Flex CPU backend.
    Cpu,
    /// CUDA GPU number N.
    Cuda(usize),
}

impl DeviceChoice {
    /// Parse `cpu`, `cuda`, `cuda:N`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        if s == "cpu" {
            return Ok(Self::Cpu);
        }
        if s == "cuda" || s == "gpu" {
            return Ok(Self::Cuda(0));
        }
        if let Some(n) = s.strip_prefix("cuda:") {
            return match n.parse() {
                Ok(i) => Ok(Self::Cuda(i)),
                Err(_) => bail!("invalid --device {s:?}: expected cpu, cuda or cuda:N"),
            };
        }
        bail!("invalid --device {s:?}: expected cpu, cuda or cuda:N")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!(DeviceChoice::parse("cpu").unwrap(), DeviceChoice::Cpu);
        assert_eq!(DeviceChoice::parse("CUDA").unwrap(), DeviceChoice::Cuda(0));
        assert_eq!(
            DeviceChoice::parse("cuda:3").unwrap(),
            DeviceChoice::Cuda(3)
        );
        assert!(DeviceChoice::parse("cuda:x").is_err());
        assert!(DeviceChoice::parse("tpu").is_err());
    }
}
