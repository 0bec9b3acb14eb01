//! `--device cpu|cuda|cuda:N` parsing with a clear error when CUDA is not available.

use crate::error::{ModelError, Result};
use tch::Device;

/// Parses a device name; `cuda` fails unless this libtorch sees a GPU.
pub fn parse_device(name: &str) -> Result<Device> {
    let device = match name {
        "cpu" => Device::Cpu,
        "cuda" => Device::Cuda(0),
        other => match other
            .strip_prefix("cuda:")
            .and_then(|i| i.parse::<usize>().ok())
        {
            Some(i) => Device::Cuda(i),
            None => {
                return Err(ModelError::Config(format!(
                    "unknown device `{other}`; valid: cpu, cuda, cuda:N"
                )))
            }
        },
    };
    if let Device::Cuda(i) = device {
        let count = tch::Cuda::device_count() as usize;
        if i >= count {
            return Err(ModelError::Config(format!(
                "device `{name}` requested but this libtorch sees {count} CUDA device(s); use --device cpu or point LIBTORCH at a CUDA build"
            )));
        }
    }
    Ok(device)
}
