//! `starbucks serve`: the flags into `starbucks_serve::Options`, then the server.

use anyhow::{Result, bail};
use burn::tensor::backend::Backend;
use starbucks_serve::{Options, Schedule};

use crate::args::{ScheduleArg, ServeArgs};

pub fn run<B: Backend>(args: ServeArgs, backend: &'static str, device: &B::Device) -> Result<()> {
    for (flag, value) in [
        ("--max-batch-tokens", args.max_batch_tokens),
        ("--max-client-batch-size", args.max_client_batch_size),
        ("--max-concurrent-requests", args.max_concurrent_requests),
        ("--payload-limit", args.payload_limit),
        ("--http-threads", args.http_threads),
    ] {
        if value == 0 {
            bail!("{flag} must be at least 1");
        }
    }
    let options = Options {
        host: args.host,
        port: args.port,
        max_batch_tokens: args.max_batch_tokens,
        max_client_batch_size: args.max_client_batch_size,
        max_concurrent_requests: args.max_concurrent_requests,
        max_input_length: args.max_input_length,
        api_key: args.api_key,
        served_model_name: args.served_model_name,
        payload_limit: args.payload_limit,
        schedule: match args.schedule {
            ScheduleArg::Join => Schedule::Join,
            ScheduleArg::Mixed => Schedule::Mixed,
            ScheduleArg::ByDepth => Schedule::ByDepth,
        },
        http_threads: args.http_threads,
        precision: args.precision,
    };
    starbucks_serve::serve::<B>(&args.model, options, backend, device.clone())?;
    Ok(())
}
