//! The data readers, one picked by the input's first byte, on the rest as a file: STS-B,
//! SemEval STS (input + gold), SICK, NLI triplets and pairs, MS MARCO triples, Tevatron JSON
//! Lines, TREC qrels and runs, id/text TSV, and a BEIR folder (corpus, queries, qrels).

use crate::support::{file, scratch, sections};
use starbucks_data::{eval, finetune};

pub fn data_files(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 11 {
        0 => drop(eval::read_stsb(&file("sts.csv", rest))),
        1 => {
            let parts = sections(rest, 2);
            drop(eval::read_semeval_sts(&file("STS.input.x.txt", parts[0]), &file("STS.gs.x.txt", parts[1])));
        }
        2 => drop(eval::read_sick(&file("SICK.txt", rest))),
        3 => drop(finetune::read_triplets(&file("triplets.tsv", rest))),
        4 => drop(finetune::read_nli_pairs(&file("pairs.tsv", rest))),
        5 => drop(finetune::read_msmarco_triples(&file("triples.tsv", rest))),
        6 => drop(finetune::read_tevatron(&file("train.jsonl", rest))),
        7 => drop(eval::read_trec_qrels(&file("qrels.txt", rest))),
        8 => drop(eval::read_trec_run(&file("run.trec", rest))),
        9 => {
            if let Ok(rows) = eval::read_id_text(&file("corpus.tsv", rest)) {
                rows.take(10_000).for_each(drop);
            }
        }
        _ => {
            let parts = sections(rest, 3);
            file("beir/corpus.jsonl", parts[0]);
            file("beir/queries.jsonl", parts[1]);
            file("beir/qrels/test.tsv", parts[2]);
            drop(eval::read_beir(&scratch().join("beir"), "test"));
        }
    }
}
