//! `starbucks serve`: the model and `starbucks_serve::Options` from the flags, then the server.

use anyhow::Result;
use burn::tensor::backend::Backend;

use crate::args::ServeArgs;

pub fn run<B: Backend>(args: ServeArgs, backend: &'static str, device: &B::Device) -> Result<()> {
    starbucks_serve::serve::<B>(&args.model, args.options, backend, device.clone())?;
    Ok(())
}
