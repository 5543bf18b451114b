//! Loading HuggingFace BERT weights from `model.safetensors`.
//!
//! The file's header is checked against the keys and shapes this config needs, in HF naming,
//! before burn-store copies the tensors: a missing key, a shape mismatch or a truncated file is
//! an error naming the file and the key; keys the encoder does not use (the pooler, an MLM head,
//! `position_ids`) are reported, not loaded.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use burn::tensor::backend::Backend;
use burn_store::{BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, PyTorchToBurnAdapter, SafetensorsStore};
use serde::Deserialize;

use crate::bert::BertModel;
use crate::config::BertConfig;
use crate::error::{Error, Result};
use crate::hf_layout::Transposed;
use crate::host::values;

/// HF key pattern → burn module path (regex, replacement), for the two names Rust cannot spell as HF does.
pub const HF_TO_BURN: [(&str, &str); 2] =
    [(r"LayerNorm\.", "layer_norm."), (r"(^|\.)attention\.self\.", "${1}attention.self_attention.")];

/// What a load found besides the weights it used.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// The key prefix the file uses (`"bert."` for `BertFor…` checkpoints, else empty).
    pub prefix: String,
    /// Keys in the file the encoder does not use, e.g. `pooler.dense.weight`.
    pub unused: Vec<String>,
}

/// Every weight `model` holds, as HF names it: key (no prefix) and PyTorch shape. Read off the
/// module (`bert.rs` is the one place the tree is written), through the same renaming and
/// layout adapter a save uses.
pub fn expected_weights<B: Backend>(model: &BertModel<B>) -> Vec<(String, Vec<usize>)> {
    let snapshots = model.collect(None, Some(Box::new(Transposed(BurnToPyTorchAdapter))), false);
    let (snapshots, _) = burn_to_hf().remap(snapshots);
    snapshots.iter().map(|s| (s.full_path(), s.shape.to_vec())).collect()
}

fn burn_to_hf() -> KeyRemapper {
    KeyRemapper::from_patterns(BURN_TO_HF.to_vec()).expect("the key patterns are valid regexes")
}

/// The HF name of a burn module path.
fn hf_name(path: &str) -> String {
    // The patterns match up to a following dot, as in a parameter's full path.
    let dotted = burn_to_hf()
        .to_regex_pairs()
        .iter()
        .fold(format!("{path}."), |p, (pattern, to)| pattern.replace_all(&p, to.as_str()).into_owned());
    dotted.trim_end_matches('.').to_string()
}

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: [u64; 2],
}

/// Reads a safetensors header: key → (dtype, shape); checks the file holds all the data.
pub fn read_safetensors_header(path: &Path) -> Result<BTreeMap<String, (String, Vec<usize>)>> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| Error::invalid(path, "not a safetensors file: shorter than its 8-byte header length"))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > file_len.saturating_sub(8) {
        return Err(Error::invalid(
            path,
            format!("truncated or not a safetensors file: header of {header_len} bytes, file of {file_len} bytes"),
        ));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let mut entries: BTreeMap<String, serde_json::Value> = serde_json::from_slice(&header)
        .map_err(|e| Error::invalid(path, format!("safetensors header is not valid JSON: {e}")))?;
    entries.remove("__metadata__");
    let data_len = file_len - 8 - header_len;
    let mut tensors = BTreeMap::new();
    for (key, value) in entries {
        let entry: HeaderEntry = serde_json::from_value(value)
            .map_err(|e| Error::invalid(path, format!("safetensors header entry '{key}': {e}")))?;
        if entry.data_offsets[1] > data_len {
            return Err(Error::invalid(
                path,
                format!(
                    "truncated: tensor '{key}' ends at byte {} of the data section, which holds {data_len} bytes",
                    entry.data_offsets[1]
                ),
            ));
        }
        tensors.insert(key, (entry.dtype, entry.shape));
    }
    Ok(tensors)
}

/// Strips the prefix and spells old LayerNorm names (`gamma`, `beta`) the current HF way.
fn canonical(key: &str, prefix: &str) -> String {
    let key = key.strip_prefix(prefix).unwrap_or(key);
    key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")
}

impl<B: Backend> BertModel<B> {
    /// Builds the encoder for `config` and loads its weights from an HF `model.safetensors`.
    pub fn from_safetensors(
        config: &BertConfig,
        path: impl AsRef<Path>,
        device: &B::Device,
    ) -> Result<(Self, LoadReport)> {
        load_safetensors(BertModel::new(config, device), path.as_ref())
    }
}

/// Loads the encoder's weights from an HF `model.safetensors` (keys with or without `bert.`).
fn load_safetensors<B: Backend>(model: BertModel<B>, path: &Path) -> Result<(BertModel<B>, LoadReport)> {
    let header = read_safetensors_header(path)?;
    let prefix = if header.keys().any(|k| k.starts_with("bert.")) { "bert." } else { "" };
    let found: BTreeMap<String, &Vec<usize>> =
        header.iter().map(|(k, (_, shape))| (canonical(k, prefix), shape)).collect();

    // The tensors are copied in before the weights the model expects are listed: a new
    // model's parameters are lazy, and listing them would draw each one's random initial
    // values only for loading to throw them away (`docs/benchmarks.md`, "Loading a model").
    // On a file that does not fit, the checks below name the weight before the copy's error.
    let (model, loaded) = copy_hf(model, path, prefix)?;
    let expected = expected_weights(&model);
    let missing: Vec<&str> = expected.iter().filter(|(k, _)| !found.contains_key(k)).map(|(k, _)| k.as_str()).collect();
    if !missing.is_empty() {
        let shown = missing.iter().take(5).copied().collect::<Vec<_>>().join(", ");
        let more = if missing.len() > 5 { format!(" and {} more", missing.len() - 5) } else { String::new() };
        return Err(Error::invalid(path, format!("missing weights for this config.json: {shown}{more}")));
    }
    for (key, shape) in &expected {
        if found[key] != shape {
            return Err(Error::invalid(
                path,
                format!("weight '{prefix}{key}' has shape {:?}, the config needs {shape:?}", found[key]),
            ));
        }
    }
    let unused: Vec<String> = found.keys().filter(|k| !expected.iter().any(|(e, _)| e == *k)).cloned().collect();
    if !unused.is_empty() {
        tracing::info!(file = %path.display(), "weights not used by the encoder: {}", unused.join(", "));
    }

    loaded?;
    if let Some(module) = first_non_finite(&model) {
        return Err(Error::invalid(path, format!("`{prefix}{module}` holds NaN or infinite values")));
    }
    Ok((model, LoadReport { prefix: prefix.to_string(), unused }))
}

/// The HF name of the first module of `model` with a NaN or infinite parameter: such weights
/// give NaN embeddings and similarities downstream, with nothing to say where they came from.
fn first_non_finite<B: Backend>(model: &BertModel<B>) -> Option<String> {
    struct Check {
        path: Vec<String>,
        bad: Option<String>,
    }
    impl<B: Backend> burn::module::ModuleVisitor<B> for Check {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &burn::module::Param<burn::tensor::Tensor<B, D>>) {
            if self.bad.is_some() {
                return;
            }
            // One pass over the values without an early exit, which the compiler vectorises.
            let finite = values(param.val()).iter().fold(true, |finite, x| finite & x.is_finite());
            if !finite {
                self.bad = Some(hf_name(&self.path.join(".")));
            }
        }
    }
    let mut check = Check { path: Vec::new(), bad: None };
    burn::module::Module::visit(model, &mut check);
    check.bad
}

/// Copies the tensors under `prefix` of an HF safetensors file into `module` (prefix stripped,
/// HF names mapped to this crate's, PyTorch layouts converted). Every parameter must be found.
fn apply_hf<B: Backend, M: ModuleSnapshot<B>>(module: M, path: &Path, prefix: &str) -> Result<M> {
    let (module, loaded) = copy_hf(module, path, prefix)?;
    loaded.map(|()| module)
}

/// [`apply_hf`]'s copy, returning the module whatever the copy found, and beside it the
/// error for a tensor of the wrong shape or a parameter the file lacks. Parameters that were
/// not copied keep their lazy initial values. An unreadable file is the outer error.
fn copy_hf<B: Backend, M: ModuleSnapshot<B>>(mut module: M, path: &Path, prefix: &str) -> Result<(M, Result<()>)> {
    let mut patterns: Vec<(String, String)> = HF_TO_BURN.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    if !prefix.is_empty() {
        patterns.push((format!("^{}", prefix.replace('.', r"\.")), String::new()));
    }
    let remapper = KeyRemapper::from_patterns(patterns).expect("the key patterns are valid regexes");
    let mut store = SafetensorsStore::from_file(path)
        .remap(remapper)
        .with_from_adapter(Transposed(PyTorchToBurnAdapter))
        .allow_partial(true);
    let result = module.load_from(&mut store).map_err(|e| Error::invalid(path, e.to_string()))?;
    let loaded = if let Some(error) = result.errors.first() {
        Err(Error::invalid(path, format!("under `{prefix}`: {error}")))
    } else if !result.missing.is_empty() {
        let missing: Vec<String> = result.missing.iter().map(|(k, _)| format!("{prefix}{k}")).collect();
        Err(Error::invalid(path, format!("missing weights: {}", missing.join(", "))))
    } else {
        Ok(())
    };
    Ok((module, loaded))
}

/// Loads the tensors stored under `prefix` (e.g. `"cls.predictions."`) of an HF safetensors
/// file into `module`, whose paths spell HF names as this crate does (`layer_norm`,
/// `self_attention`). Every parameter of `module` must be found.
pub fn load_module<B: Backend, M: ModuleSnapshot<B>>(module: M, path: &Path, prefix: &str) -> Result<M> {
    let header = read_safetensors_header(path)?;
    if !header.keys().any(|k| k.starts_with(prefix)) {
        return Err(Error::invalid(path, format!("no weights under `{prefix}`")));
    }
    apply_hf(module, path, prefix)
}

/// Writes every parameter of `module` to a safetensors file under its module path (PyTorch
/// layouts), via a temporary file renamed into place.
pub(crate) fn save_module<B: Backend, M: ModuleSnapshot<B>>(module: &M, path: &Path) -> Result<()> {
    let tmp = path.with_extension("safetensors.tmp");
    let mut store = SafetensorsStore::from_file(&tmp)
        .with_to_adapter(Transposed(BurnToPyTorchAdapter))
        .metadata("format", "pt")
        .overwrite(true);
    module.save_into(&mut store).map_err(|e| Error::invalid(path, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}

/// burn module path pattern → HF key, the inverse of [`HF_TO_BURN`].
const BURN_TO_HF: [(&str, &str); 2] =
    [(r"layer_norm\.", "LayerNorm."), (r"(^|\.)attention\.self_attention\.", "${1}attention.self.")];

/// Writes the embeddings and the first `layers` encoder layers as an HF `model.safetensors`
/// (HF key names, PyTorch layouts, no prefix), via a temporary file renamed into place.
pub fn save_hf_safetensors<B: Backend>(model: &BertModel<B>, path: &Path, layers: usize) -> Result<()> {
    let kept: Vec<String> = (0..layers).map(|l| l.to_string()).collect();
    let remapper = burn_to_hf();
    let tmp = path.with_extension("safetensors.tmp");
    let mut store = SafetensorsStore::from_file(&tmp)
        .with_regexes([r"^embeddings\.".to_string(), format!(r"^encoder\.layer\.({})\.", kept.join("|"))])
        .remap(remapper)
        .with_to_adapter(Transposed(BurnToPyTorchAdapter))
        .metadata("format", "pt")
        .overwrite(true);
    model.save_into(&mut store).map_err(|e| Error::invalid(path, format!("cannot write: {e}")))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
}
