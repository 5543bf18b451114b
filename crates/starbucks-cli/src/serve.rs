//! `starbucks serve`: the flags into `starbucks_serve::Options`, then the server.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
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
    let mut timeouts = [("--header-timeout", args.header_timeout), ("--body-timeout", args.body_timeout)]
        .into_iter()
        .map(|(flag, seconds)| match Duration::try_from_secs_f64(seconds) {
            Ok(timeout) if !timeout.is_zero() => Ok(timeout),
            _ => Err(anyhow!("{flag} {seconds}: give a number of seconds above 0")),
        });
    let (header_timeout, body_timeout) = (timeouts.next().expect("two")?, timeouts.next().expect("two")?);
    let options = Options {
        host: args.host,
        port: args.port,
        max_batch_tokens: args.max_batch_tokens,
        max_client_batch_size: args.max_client_batch_size,
        max_concurrent_requests: args.max_concurrent_requests,
        max_input_length: args.max_input_length,
        auto_truncate: args.auto_truncate,
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
        cors_allow_origin: args.cors_allow_origin,
        prometheus_port: args.prometheus_port,
        header_timeout,
        body_timeout,
    };
    starbucks_serve::serve::<B>(&args.model, options, backend, device.clone())?;
    Ok(())
}
