//! Writing a sharded optimizer's state without holding it whole: rank 0 appends each gathered
//! tensor's bytes to a spool file as the ranks gather them one at a time, then writes the
//! checkpoint's `optimizer.safetensors` with the `safetensors` crate, which reads each tensor
//! back from the spool as it writes it. No process holds more than one whole tensor.

use crate::error::{IoResultExt, Result, TrainError};
use safetensors::tensor::{Dtype, View};
use std::borrow::Cow;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Tensors spooled to a file, in order.
pub struct Spool {
    path: PathBuf,
    file: std::fs::File,
    entries: Vec<Entry>,
    end: u64,
}

struct Entry {
    name: String,
    dtype: Dtype,
    shape: Vec<usize>,
    offset: u64,
    len: usize,
}

/// The safetensors dtype of a tensor kind rlvr stores.
fn dtype(kind: Kind) -> Result<Dtype> {
    Ok(match kind {
        Kind::Float => Dtype::F32,
        Kind::Double => Dtype::F64,
        Kind::BFloat16 => Dtype::BF16,
        Kind::Half => Dtype::F16,
        Kind::Int64 => Dtype::I64,
        other => {
            return Err(TrainError::Run(format!(
                "internal: cannot spool a {other:?} tensor"
            )))
        }
    })
}

impl Spool {
    /// A new spool file at `path` (replaced if it exists).
    pub fn create(path: &Path) -> Result<Spool> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)
            .at(path)?;
        Ok(Spool {
            path: path.to_path_buf(),
            file,
            entries: Vec::new(),
            end: 0,
        })
    }

    /// Appends `t` (any device) under `name`.
    pub fn push(&mut self, name: String, t: &Tensor) -> Result<()> {
        let t = t.to_device(tch::Device::Cpu).contiguous();
        let numel = t.numel();
        let len = numel * t.kind().elt_size_in_bytes();
        let mut bytes = vec![0u8; len];
        t.f_copy_data_u8(&mut bytes, numel)?;
        self.file.write_all(&bytes).at(&self.path)?;
        self.entries.push(Entry {
            name,
            dtype: dtype(t.kind())?,
            shape: t.size().iter().map(|&d| d as usize).collect(),
            offset: self.end,
            len,
        });
        self.end += len as u64;
        Ok(())
    }

    /// Bytes of tensor data spooled.
    pub fn bytes(&self) -> u64 {
        self.end
    }

    /// Writes the spooled tensors as the safetensors file `out`, then removes the spool.
    pub fn write_safetensors(self, out: &Path) -> Result<()> {
        let Spool {
            path,
            file,
            entries,
            ..
        } = self;
        let file = std::cell::RefCell::new(file);
        let failed = std::cell::Cell::new(false);
        let views: Vec<(String, SpoolView<'_>)> = entries
            .iter()
            .map(|e| {
                (
                    e.name.clone(),
                    SpoolView {
                        entry: e,
                        file: &file,
                        failed: &failed,
                    },
                )
            })
            .collect();
        safetensors::tensor::serialize_to_file(views, &None, out)
            .map_err(|e| TrainError::Run(format!("writing {}: {e}", out.display())))?;
        if failed.get() {
            return Err(TrainError::Run(format!(
                "reading the spool {} back failed while writing {}",
                path.display(),
                out.display()
            )));
        }
        std::fs::remove_file(&path).at(&path)
    }
}

/// One spooled tensor, read back when the writer asks for its bytes.
struct SpoolView<'a> {
    entry: &'a Entry,
    file: &'a std::cell::RefCell<std::fs::File>,
    failed: &'a std::cell::Cell<bool>,
}

impl View for SpoolView<'_> {
    fn dtype(&self) -> Dtype {
        self.entry.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.entry.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let mut bytes = vec![0u8; self.entry.len];
        let mut file = self.file.borrow_mut();
        let read = file
            .seek(SeekFrom::Start(self.entry.offset))
            .and_then(|_| file.read_exact(&mut bytes));
        if read.is_err() {
            // Reported after the write (the trait cannot fail).
            self.failed.set(true);
        }
        Cow::Owned(bytes)
    }
    fn data_len(&self) -> usize {
        self.entry.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spooled_tensors_read_back_equal_and_the_spool_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let spool_path = dir.path().join("x.spool");
        let mut spool = Spool::create(&spool_path).unwrap();
        let a = Tensor::randn([3, 5], (Kind::Float, tch::Device::Cpu));
        let b = Tensor::randn([7], (Kind::Float, tch::Device::Cpu)).to_kind(Kind::BFloat16);
        spool.push("t".into(), &Tensor::from(42i64)).unwrap();
        spool.push("m.a".into(), &a).unwrap();
        spool.push("v.b".into(), &b).unwrap();
        let out = dir.path().join("o.safetensors");
        spool.write_safetensors(&out).unwrap();
        assert!(!spool_path.exists());
        let read: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(&out)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(read["t"].int64_value(&[]), 42);
        assert!(read["m.a"].equal(&a));
        assert!(read["v.b"].equal(&b));
    }
}
