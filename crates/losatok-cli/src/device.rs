//! `--device cpu|cuda[:N]|wgpu[:N]` and the backend it selects: [`DeviceChoice`] and the one
//! dispatch macro, [`with_backend!`], that every command uses.

use anyhow::Result;

/// A parsed `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// Burn's Flex CPU backend.
    Cpu,
    /// CUDA GPU number N.
    Cuda(usize),
    /// wgpu (Vulkan, Metal, DirectX 12): the default adapter, or discrete GPU number N.
    Wgpu(Option<usize>),
}

impl DeviceChoice {
    /// Parse `cpu`, `cuda`, `cuda:N`, `wgpu`, `wgpu:N`.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        let invalid = || {
            anyhow::anyhow!("invalid --device {s:?}: expected cpu, cuda, cuda:N, wgpu or wgpu:N")
        };
        match s.as_str() {
            "cpu" => return Ok(Self::Cpu),
            "cuda" | "gpu" => return Ok(Self::Cuda(0)),
            "wgpu" => return Ok(Self::Wgpu(None)),
            _ => {}
        }
        if let Some(n) = s.strip_prefix("cuda:") {
            return n.parse().map(Self::Cuda).map_err(|_| invalid());
        }
        if let Some(n) = s.strip_prefix("wgpu:") {
            return n
                .parse()
                .map(|i| Self::Wgpu(Some(i)))
                .map_err(|_| invalid());
        }
        Err(invalid())
    }
}

/// Run `$body` with `$ty` the backend a `--device` selects (a type alias in `$body`'s scope:
/// training uses `Autodiff<$ty>`) and `$dev` its device; a backend this build lacks is an error
/// that names the cargo feature.
macro_rules! with_backend {
    ($device:expr, |$ty:ident, $dev:ident| $body:expr) => {{
        match $crate::device::DeviceChoice::parse($device)? {
            $crate::device::DeviceChoice::Cpu => {
                type $ty = losatok::Cpu;
                let $dev = Default::default();
                $body
            }
            $crate::device::DeviceChoice::Cuda(_i) => {
                #[cfg(feature = "cuda")]
                {
                    type $ty = losatok::Cuda;
                    let $dev = burn::backend::cuda::CudaDevice::new(_i);
                    $body
                }
                #[cfg(not(feature = "cuda"))]
                anyhow::bail!(
                    "--device cuda needs a build with the `cuda` feature (cargo build --release --features cuda)"
                )
            }
            $crate::device::DeviceChoice::Wgpu(_i) => {
                #[cfg(feature = "wgpu")]
                {
                    type $ty = losatok::Wgpu;
                    let $dev = match _i {
                        None => burn::backend::wgpu::WgpuDevice::DefaultDevice,
                        Some(n) => burn::backend::wgpu::WgpuDevice::DiscreteGpu(n),
                    };
                    $body
                }
                #[cfg(not(feature = "wgpu"))]
                anyhow::bail!(
                    "--device wgpu needs a build with the `wgpu` feature (cargo build --release --features wgpu)"
                )
            }
        }
    }};
}
pub(crate) use with_backend;

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
        assert_eq!(
            DeviceChoice::parse("wgpu").unwrap(),
            DeviceChoice::Wgpu(None)
        );
        assert_eq!(
            DeviceChoice::parse("wgpu:1").unwrap(),
            DeviceChoice::Wgpu(Some(1))
        );
        assert!(DeviceChoice::parse("wgpu:").is_err());
        assert!(DeviceChoice::parse("tpu").is_err());
    }
}
