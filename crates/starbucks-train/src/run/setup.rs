//! Everything a run reads before it writes: the model folder, the config's defaults resolved
//! against it, the output folder checked, and the task with its data.

use std::path::Path;

use burn::tensor::backend::AutodiffBackend;
use starbucks_data::fineweb::Source;
use starbucks_data::masking::{MaskingConfig, SmaeMasker};
use starbucks_model::{
    Embedder, Pooling, Size, bert::BertModel, config::BertConfig, sentence_transformers::SentenceConfig,
    tokenizer::Tokenizer,
};
use starbucks_objectives::{Mse2dConfig, Objective, SizeList, SrlWeights};

use super::RunOptions;
use crate::config::{DataFormat, Method, RunConfig, Task};
use crate::error::{Error, Result};
use crate::finetune::{Examples, FinetuneData, FinetuneTask};
use crate::lock::{self, LOCK_FILE};
use crate::pretrain::{PretrainData, PretrainTask};

/// Retrieval defaults (Tevatron's): hard negatives per query, query and passage lengths.
const NEGATIVES: usize = 7;
const QUERY_MAX_LEN: usize = 32;
const PASSAGE_MAX_LEN: usize = 196;

/// Why a value is present after [`resolve`].
const RESOLVED: &str = "set by resolve";

/// Settings every task shares, checked. `config` has every default that applies resolved, so
/// the `config.toml` a run saves says everything it used.
pub(super) struct Common {
    pub config: RunConfig,
    /// The folder `model.path` names: itself, or a hub id's snapshot in the HuggingFace cache
    /// (the config keeps the id, so a resumed run compares equal).
    pub model_dir: std::path::PathBuf,
    /// The model folder's own `max_seq_length`: the default [`resolve`] fills in.
    pub folder_max_seq_length: usize,
    pub output: std::path::PathBuf,
    pub bert: BertConfig,
    pub sentence: SentenceConfig,
    pub tokenizer: Tokenizer,
    pub sizes: SizeList,
    pub progress: bool,
}

impl Common {
    pub fn pooling(&self) -> Pooling {
        self.sentence.pooling
    }

    /// The embedder of `model` as this run would export it.
    pub fn embedder<B: AutodiffBackend>(
        &self,
        model: BertModel<B::InnerBackend>,
        device: &B::Device,
    ) -> Embedder<B::InnerBackend> {
        Embedder::from_parts(model, self.bert.clone(), self.tokenizer.clone(), self.sentence.clone(), device)
    }
}

pub(super) fn input<E: std::fmt::Display>(e: E) -> Error {
    Error::Input(e.to_string())
}

/// Fills in every default of `config` that applies to its task; the one that depends on the
/// model folder is its `max_seq_length`. Only keys the config check allows for the task are
/// set, so a resolved config passes it again.
fn resolve(config: &RunConfig, folder_max_seq_length: usize) -> RunConfig {
    let mut config = config.clone();
    let retrieval = config.data.format.is_retrieval();
    let max_len = *config.model.max_seq_length.get_or_insert(folder_max_seq_length);
    let d = &mut config.data;
    match config.task {
        Task::Finetune => {
            config.model.pooling.get_or_insert(if retrieval { Pooling::Cls } else { Pooling::Mean });
            if retrieval {
                d.negatives.get_or_insert(NEGATIVES);
                d.query_max_len.get_or_insert(QUERY_MAX_LEN);
                d.passage_max_len.get_or_insert(PASSAGE_MAX_LEN);
            }
        }
        Task::Pretrain => {
            let masking = MaskingConfig::default();
            d.max_len.get_or_insert(max_len);
            d.encoder_ratio.get_or_insert(masking.encoder_ratio);
            d.decoder_ratio.get_or_insert(masking.decoder_ratio);
        }
    }
    let o = &mut config.objective;
    if matches!(o.method, Method::Srl | Method::SrlDeep) {
        o.kl_weight.get_or_insert(Objective::default_kl_weight(retrieval));
    }
    if o.method == Method::SrlDeep {
        o.symmetric_weight.get_or_insert(1.0);
        o.deep_weight.get_or_insert(1.0);
        o.deep_detached.get_or_insert(false);
    }
    config
}

/// Refuses an output folder that holds something other than this run (or anything, without
/// `resume`). Both configs are compared resolved, so a folder saved before a default was
/// written out still resumes.
pub(super) fn check_output(
    config: &RunConfig,
    folder_max_seq_length: usize,
    output: &Path,
    resume: bool,
) -> Result<()> {
    if output.exists() && !output.is_dir() {
        return Err(Error::Input(format!("{}: the output path is a file", output.display())));
    }
    starbucks_files::check_writable(output).map_err(Error::Input)?;
    let occupied = output.is_dir()
        && std::fs::read_dir(output).map_err(input)?.filter_map(|e| e.ok()).any(|e| e.file_name() != LOCK_FILE);
    if !occupied {
        return Ok(());
    }
    let saved = output.join("config.toml");
    if !resume {
        return Err(Error::Input(format!(
            "{}: the output folder holds another run; pass --resume to continue it, or choose another --output",
            output.display()
        )));
    }
    let text = std::fs::read_to_string(&saved)
        .map_err(|_| Error::Input(format!("{}: the output folder is not empty and holds no run", output.display())))?;
    let theirs: RunConfig =
        toml::from_str(&text).map_err(|e| Error::Input(format!("{}: not a run config: {e}", saved.display())))?;
    let theirs = resolve(&theirs, folder_max_seq_length);
    let mut ours = config.clone();
    ours.output = theirs.output.clone();
    if let Some(difference) = ours.first_difference(&theirs) {
        return Err(Error::Input(format!(
            "{}: the output folder holds a run with another config ({difference}); choose another --output",
            output.display()
        )));
    }
    Ok(())
}

pub(super) fn common(config: &RunConfig, options: &RunOptions) -> Result<Common> {
    let output = options.output.clone().unwrap_or_else(|| config.output.clone());
    let model_dir = starbucks_model::resolve_model(&config.model.path)
        .map_err(|e| Error::Input(format!("key `model.path`: {e}")))?;
    let dir = &model_dir;
    let bert = BertConfig::from_file(dir.join("config.json")).map_err(input)?;
    let sentence = SentenceConfig::from_dir(dir, &bert).map_err(input)?;
    if sentence.dense.is_some() {
        return Err(Error::Input(format!(
            "{}: training a model with a Dense module is not supported; start from the plain encoder",
            dir.display()
        )));
    }
    let folder_max_seq_length = sentence.max_seq_length;
    let config = resolve(config, folder_max_seq_length);
    let max_len = config.model.max_seq_length.expect(RESOLVED);
    if max_len > bert.max_position_embeddings {
        return Err(Error::Input(format!(
            "key `model.max_seq_length`: {max_len} exceeds the model's {} positions",
            bert.max_position_embeddings
        )));
    }
    if max_len < 3 {
        return Err(Error::Input(format!(
            "key `model.max_seq_length`: {max_len} leaves no room for a token between [CLS] and [SEP] (at least 3)"
        )));
    }
    let tokenizer_path = dir.join("tokenizer.json");
    let tokenizer = Tokenizer::from_file(&tokenizer_path, max_len).map_err(input)?;
    tokenizer.check_vocab(&bert, &tokenizer_path).map_err(input)?;
    let sizes =
        Size::parse_list(&config.objective.sizes).map_err(|e| Error::Input(format!("key `objective.sizes`: {e}")))?;
    let sizes = SizeList::new(sizes, &bert).map_err(|e| Error::Input(format!("key `objective.sizes`: {e}")))?;
    lock::check_free(&output)?;
    check_output(&config, folder_max_seq_length, &output, options.resume)?;
    // Pre-training exports a mean-pooled model, as the folder it starts from.
    let pooling = config.model.pooling.unwrap_or(Pooling::Mean);
    let sentence = SentenceConfig { max_seq_length: max_len, pooling, ..sentence };
    Ok(Common {
        config,
        model_dir,
        folder_max_seq_length,
        output,
        bert,
        sentence,
        tokenizer,
        sizes,
        progress: options.progress,
    })
}

/// The encoder to train, with `model.dropout` in place of the folder's where it is set (the
/// SMAE decoder, a copy of layer 0, takes it too; `c.bert`, which an export writes, does not).
pub(super) fn load_encoder<B: AutodiffBackend>(c: &Common, device: &B::Device) -> Result<BertModel<B>> {
    let path = c.model_dir.join("model.safetensors");
    let mut bert = c.bert.clone();
    if let Some(p) = c.config.model.dropout {
        bert.hidden_dropout_prob = p;
        bert.attention_probs_dropout_prob = p;
    }
    let (model, _) = BertModel::from_safetensors(&bert, &path, device).map_err(input)?;
    Ok(model)
}

fn objective(c: &Common) -> Result<Objective> {
    let o = &c.config.objective;
    Ok(match o.method {
        Method::Srl => Objective::Srl { sizes: c.sizes.clone(), kl_weight: o.kl_weight.expect(RESOLVED) },
        Method::SrlDeep => Objective::SrlDeep {
            sizes: c.sizes.clone(),
            weights: SrlWeights {
                symmetric: o.symmetric_weight.expect(RESOLVED),
                deep: o.deep_weight.expect(RESOLVED),
                kl: o.kl_weight.expect(RESOLVED),
                deep_detached: o.deep_detached.expect(RESOLVED),
            },
        },
        Method::Mse2d => {
            let mut dims: Vec<usize> = c.sizes.sizes().iter().map(|s| s.dims).collect();
            dims.reverse();
            Objective::Mse2d(Mse2dConfig::new(dims))
        }
        Method::Single => {
            let size = match &o.size {
                Some(text) => text.parse::<Size>().map_err(|e| Error::Input(format!("key `objective.size`: {e}")))?,
                None => c.sizes.full(),
            };
            size.check(&c.bert).map_err(|e| Error::Input(format!("key `objective.size`: {e}")))?;
            Objective::Single(size)
        }
        Method::Smae => unreachable!("the config check keeps SMAE to pre-training"),
    })
}

pub(super) fn finetune_task(c: &Common) -> Result<(FinetuneTask, FinetuneData)> {
    let d = &c.config.data;
    // A local file, or the train split of a hub dataset (every data file of it, in order).
    let files = starbucks_data::hub::local_files(&d.path, Some("train")).map_err(input)?;
    let each = |read: &dyn Fn(&Path) -> starbucks_data::Result<Vec<starbucks_data::finetune::Triplet>>| -> Result<Vec<starbucks_data::finetune::Triplet>> {
        files.iter().map(|f| read(f).map_err(input)).collect::<Result<Vec<_>>>().map(|v| v.concat())
    };
    let examples = match d.format {
        DataFormat::Triplets => Examples::Triplets(each(&starbucks_data::finetune::read_triplets)?),
        DataFormat::NliPairs => Examples::Triplets(each(&|f| {
            Ok(starbucks_data::finetune::triplets_from_pairs(&starbucks_data::finetune::read_nli_pairs(f)?))
        })?),
        DataFormat::Tevatron | DataFormat::MsmarcoTriples => {
            let read = if d.format == DataFormat::Tevatron {
                starbucks_data::finetune::read_tevatron
            } else {
                starbucks_data::finetune::read_msmarco_triples
            };
            let examples = files.iter().map(|f| read(f).map_err(input)).collect::<Result<Vec<_>>>()?.concat();
            if let Some(e) = examples.iter().find(|e| e.negative_passages.is_empty()) {
                return Err(Error::Input(format!("{}: query {} has no negative passage", d.path, e.query_id)));
            }
            Examples::Retrieval { examples, negatives: d.negatives.expect(RESOLVED) }
        }
        DataFormat::Fineweb => unreachable!("the config check keeps FineWeb to pre-training"),
    };
    if examples.is_empty() {
        return Err(Error::Input(format!("{}: no training examples", d.path)));
    }
    // Cut from the run's tokenizer: `tokenizer.json` is read once per run.
    let (tokenizer, query_tokenizer) = if d.format.is_retrieval() {
        (
            c.tokenizer.clone().with_max_length(d.passage_max_len.expect(RESOLVED)).map_err(input)?,
            c.tokenizer.clone().with_max_length(d.query_max_len.expect(RESOLVED)).map_err(input)?,
        )
    } else {
        (c.tokenizer.clone(), c.tokenizer.clone())
    };
    let t = &c.config.train;
    let task = FinetuneTask { tokenizer, query_tokenizer, objective: objective(c)?, pooling: c.pooling() };
    Ok((task, FinetuneData::new(examples, t.batch_size, t.seed)))
}

fn pretrain_source(spec: &str) -> Result<Source> {
    if let Some(dataset) = starbucks_data::hub::HubDataset::parse(spec) {
        let urls = dataset.and_then(|d| d.urls(&starbucks_hub::Hub::from_env(), None)).map_err(input)?;
        return Ok(Source::urls(urls));
    }
    if spec.starts_with("http://") || spec.starts_with("https://") {
        return Ok(Source::urls(spec.split_whitespace()));
    }
    Source::local(spec).map_err(input)
}

pub(super) fn pretrain_task(c: &Common) -> Result<(PretrainTask, PretrainData)> {
    let d = &c.config.data;
    let source = pretrain_source(&d.path)?;
    let masking = MaskingConfig {
        max_len: d.max_len.expect(RESOLVED),
        encoder_ratio: d.encoder_ratio.expect(RESOLVED),
        decoder_ratio: d.decoder_ratio.expect(RESOLVED),
        ..MaskingConfig::default()
    };
    // Named as the config spells them.
    masking.check().map_err(|message| Error::Input(message.replacen("`", "key `data.", 1)))?;
    if masking.max_len > c.bert.max_position_embeddings {
        return Err(Error::Input(format!(
            "key `data.max_len`: {} exceeds the model's {} positions",
            masking.max_len, c.bert.max_position_embeddings
        )));
    }
    let tokenizer_path = c.model_dir.join("tokenizer.json");
    let masker =
        SmaeMasker::new(c.tokenizer.inner().clone(), masking, &tokenizer_path.display().to_string()).map_err(input)?;
    // The first document is read now, so a bad path or format is reported before any output.
    source.stream(Default::default()).next().transpose().map_err(input)?;
    let task = PretrainTask { sizes: c.sizes.clone(), pad_id: c.tokenizer.pad_id() };
    Ok((task, PretrainData::new(source, masker, c.config.train.batch_size)))
}
