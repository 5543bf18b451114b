//! `starbucks embed`: one text per line in, one embedding per line (or a .npy array) out,
//! streamed in chunks with a progress bar on standard error.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};

use anyhow::{Context, Result, bail};
use burn::tensor::backend::Backend;
use indicatif::{ProgressBar, ProgressStyle};
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

pub fn run<B: Backend>(args: EmbedArgs, device: &B::Device) -> Result<()> {
    let embedder = Embedder::<B>::from_pretrained(&args.model, device)?.with_batch_size(args.batch_size);
    let size = args.size.unwrap_or_else(|| embedder.full_size());
    let input: Box<dyn BufRead> = if args.input.as_os_str() == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            File::open(&args.input).with_context(|| format!("{}: cannot open", args.input.display()))?,
        ))
    };
    let total = if args.input.as_os_str() == "-" {
        None
    } else {
        Some(BufReader::new(File::open(&args.input)?).lines().count() as u64)
    };
    let progress = match total {
        Some(n) if n > CHUNK as u64 => ProgressBar::new(n),
        _ => ProgressBar::hidden(),
    };
    progress.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} texts, {per_sec}, ETA {eta}").expect("valid template"),
    );

    let (mut out, npy): (Box<dyn Write>, Option<File>) = match (&args.output, args.format) {
        (Some(path), EmbedFormat::Npy) => {
            let mut file = File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
            file.write_all(&npy_header(0, size.dims))?;
            (Box::new(BufWriter::new(file.try_clone()?)), Some(file))
        }
        (None, EmbedFormat::Npy) => bail!("--format npy needs --output FILE"),
        (Some(path), EmbedFormat::Jsonl) => (
            Box::new(BufWriter::new(File::create(path).with_context(|| format!("{}: cannot create", path.display()))?)),
            None,
        ),
        (None, EmbedFormat::Jsonl) => (Box::new(BufWriter::new(std::io::stdout().lock())), None),
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
                EmbedFormat::Jsonl => writeln!(out, "{}", serde_json::to_string(&vector)?)?,
                EmbedFormat::Npy => out.write_all(&vector.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())?,
            }
        }
        rows += texts.len();
        progress.inc(texts.len() as u64);
    }
    out.flush()?;
    drop(out);
    progress.finish_and_clear();
    if let Some(mut file) = npy {
        // The header's shape is written last, once the row count is known; same length.
        let header = npy_header(rows, size.dims);
        if header.len() != npy_header(0, size.dims).len() {
            bail!("internal: the .npy header changed length");
        }
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&header)?;
    }
    Ok(())
}
