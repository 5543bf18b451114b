//! A training config as `RunConfig::load` layers it: the TOML file (first section), then
//! `STARBUCKS_…` environment overrides (`key=value` lines of the second), then `--set key=value`
//! (lines of the third).

use std::collections::BTreeMap;

use crate::support::{file, sections};
use starbucks_train::RunConfig;

pub fn run_config(data: &[u8]) {
    let parts = sections(data, 3);
    let path = file("run.toml", parts[0]);
    let lines = |part: &[u8]| String::from_utf8_lossy(part).lines().map(str::to_string).collect::<Vec<_>>();
    let env: BTreeMap<String, String> =
        lines(parts[1]).iter().filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string()))).collect();
    if let Ok(config) = RunConfig::load(&path, &env, &lines(parts[2])) {
        // What a run writes into its output folder must read back as the same config.
        let again: RunConfig = toml::from_str(&config.to_toml()).expect("the written config parses");
        assert_eq!(again, config, "the written config round-trips");
    }
}
