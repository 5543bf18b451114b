//! `starbucks embed`: one text per line in, one embedding per line (or a .npy array) out,
//! streamed in chunks with a progress bar on standard error.
//!
//! The input is read in one pass (a pipe or FIFO works; progress comes from a regular file's
//! size). The output goes to a hidden temporary file beside `--output`, renamed over it only
//! when every text is embedded: a failed run leaves an earlier output as it was.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use indicatif::{ProgressBar, ProgressStyle};
use starbucks_files::{Staged, check_writable};
use starbucks_model::Embedder;

use crate::args::{EmbedArgs, EmbedFormat};

/// Texts read and embedded at a time (memory stays bounded by this, not by the input).
const CHUNK: usize = 4096;

/// A `.npy` header for `rows × dims` little-endian float32, padded to a multiple of 64 bytes.
fn npy_header(rows: usize, dims: usize) -> Vec<u8> {
    let dict = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {dims}), }}");
    let mut header = b"\x93NUMPY\x01\x00".to_vec();
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.div_ceil(64) * 64;
    header.extend(((total - 10) as u16).to_le_bytes());
    header.extend(dict.as_bytes());
    header.extend(std::iter::repeat_n(b' ', total - unpadded));
    header.push(b'\n');
    header
}

/// Counts the bytes read through it, for the progress bar.
struct Counting<R> {
    inner: R,
    progress: ProgressBar,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

/// The input and its size in bytes when it is a regular file; a folder is refused.
fn open_input(path: &Path) -> Result<(Box<dyn Read>, Option<u64>)> {
    if path.as_os_str() == "-" {
        return Ok((Box::new(std::io::stdin()), None));
    }
    let file = File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let meta = file.metadata().with_context(|| format!("{}: cannot read", path.display()))?;
    if meta.is_dir() {
        bail!("{}: is a folder, not a file of texts", path.display());
    }
    Ok((Box::new(file), meta.is_file().then_some(meta.len())))
}

/// Whether `output` names the same file as `input` (writing it would destroy the input).
fn same_file(input: &Path, output: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(a), Ok(b)) = (std::fs::metadata(input), std::fs::metadata(output)) {
            return a.dev() == b.dev() && a.ino() == b.ino();
        }
    }
    matches!((input.canonicalize(), output.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

pub fn run<B: Backend>(args: EmbedArgs, device: &B::Device) -> Result<()> {
    if let Some(output) = &args.output
        && same_file(&args.input, output)
    {
        bail!("{}: the output is the input file; give another --output", output.display());
    }
    if args.output.is_none() && args.format == EmbedFormat::Npy {
        bail!("--format npy needs --output FILE");
    }
    let (input, total_bytes) = open_input(&args.input)?;
    let mut staged = match args.output.as_deref() {
        Some(path) => {
            check_writable(path).map_err(anyhow::Error::msg)?;
            Some(Staged::create(path).with_context(|| format!("{}: cannot create", path.display()))?)
        }
        None => None,
    };
    let embedder = Embedder::<B>::from_pretrained(&args.model, device)?
        .with_batch_size(args.batch_size)
        .with_precision(args.precision)?;
    let size = args.size.unwrap_or_else(|| embedder.full_size());
    size.check_within(embedder.full_size())?;

    let progress = match total_bytes {
        Some(n) if n > 1 << 20 => ProgressBar::new(n),
        _ => ProgressBar::hidden(),
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} read, {bytes_per_sec}, ETA {eta}")
            .expect("valid template"),
    );
    let input = BufReader::new(Counting { inner: input, progress: progress.clone() });
    let written = || args.output.as_ref().map_or("standard output".to_string(), |p| p.display().to_string());
    let mut out: Box<dyn Write> = match &mut staged {
        Some(staged) => {
            let file = staged.file();
            if args.format == EmbedFormat::Npy {
                file.write_all(&npy_header(0, size.dims)).with_context(|| format!("{}: cannot write", written()))?;
            }
            Box::new(BufWriter::new(file.try_clone()?))
        }
        None => Box::new(BufWriter::new(std::io::stdout().lock())),
    };

    let mut lines = input.lines().enumerate();
    let mut rows = 0usize;
    loop {
        let mut texts = Vec::with_capacity(CHUNK);
        for (number, line) in lines.by_ref().take(CHUNK) {
            texts.push(
                line.with_context(|| format!("{}:{}: cannot read (not UTF-8?)", args.input.display(), number + 1))?,
            );
        }
        if texts.is_empty() {
            break;
        }
        for vector in embedder.embed(&texts, size)? {
            match args.format {
                EmbedFormat::Jsonl => writeln!(out, "{}", serde_json::to_string(&vector)?),
                EmbedFormat::Npy => out.write_all(&vector.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()),
            }
            .with_context(|| format!("{}: cannot write", written()))?;
        }
        rows += texts.len();
    }
    out.flush().with_context(|| format!("{}: cannot write", written()))?;
    drop(out);
    progress.finish_and_clear();
    if let Some(mut staged) = staged {
        if args.format == EmbedFormat::Npy {
            // The header's shape is written last, once the row count is known; same length.
            let header = npy_header(rows, size.dims);
            if header.len() != npy_header(0, size.dims).len() {
                bail!("internal: the .npy header changed length");
            }
            let file = staged.file();
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&header).with_context(|| format!("{}: cannot write", written()))?;
        }
        staged.commit().with_context(|| format!("{}: cannot write", written()))?;
    }
    Ok(())
}
