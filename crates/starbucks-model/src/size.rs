//! `Size`: a (layers, dims) pair, the unit of a 2D Matryoshka model.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::config::BertConfig;
use crate::error::{Error, Result};

/// The first `layers` transformer layers and the first `dims` dimensions of the pooled embedding.
/// Layer 0 is the embedding output; layer *n* the output of the *n*-th transformer layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Size {
    pub layers: usize,
    pub dims: usize,
}

impl Size {
    /// The paper's names for BERT-base sizes, smallest first.
    pub const NAMED: [(&'static str, Size); 6] = [
        ("demi", Size::new(2, 32)),
        ("short", Size::new(4, 64)),
        ("tall", Size::new(6, 128)),
        ("grande", Size::new(8, 256)),
        ("venti", Size::new(10, 512)),
        ("trenta", Size::new(12, 768)),
    ];

    /// Named size lists, each smallest first with the full model last: METHOD.md's list for a
    /// 6-layer, 384-dim model such as all-MiniLM-L6-v2, and the paper's for BERT-base.
    pub const LISTS: [(&'static str, &'static str); 2] =
        [("minilm", "1,32 2,64 3,96 4,128 5,256 6,384"), ("bert-base", "demi short tall grande venti trenta")];

    pub const fn new(layers: usize, dims: usize) -> Self {
        Size { layers, dims }
    }

    /// The whole model: every layer, every dimension.
    pub fn full(config: &BertConfig) -> Self {
        Size::new(config.num_hidden_layers, config.hidden_size)
    }

    /// The paper's name of this size, if it has one.
    pub fn name(&self) -> Option<&'static str> {
        Self::NAMED.iter().find(|(_, s)| s == self).map(|(n, _)| *n)
    }

    /// Errors when the size asks for more layers or dims than the model has.
    pub fn check(&self, config: &BertConfig) -> Result<()> {
        self.check_within(Size::full(config))
    }

    /// Errors when the size asks for more layers or dims than `full` (e.g. a folder whose
    /// Dense module already cut the dims).
    pub fn check_within(&self, full: Size) -> Result<()> {
        if self.outside(full).is_some() {
            return Err(Error::SizeTooLarge {
                layers: self.layers,
                dims: self.dims,
                max_layers: full.layers,
                max_dims: full.dims,
            });
        }
        Ok(())
    }

    /// The first axis, layers then dims, on which this size is 0 or more than `full`'s: the
    /// axis, this size's value and `full`'s. Every bound check of a size is this one.
    pub fn outside(&self, full: Size) -> Option<(Axis, usize, usize)> {
        [(Axis::Layers, self.layers, full.layers), (Axis::Dims, self.dims, full.dims)]
            .into_iter()
            .find(|&(_, value, bound)| value == 0 || value > bound)
    }

    /// Parses a list of sizes such as `"1,32 2,64"` or `"demi short"` (whitespace or `;`
    /// separated); a name of [`Self::LISTS`] (`"minilm"`) stands for its sizes.
    pub fn parse_list(text: &str) -> Result<Vec<Size>> {
        let mut sizes = Vec::new();
        for token in text.split(|c: char| c.is_whitespace() || c == ';').filter(|s| !s.is_empty()) {
            match Self::LISTS.iter().find(|(name, _)| name.eq_ignore_ascii_case(token)) {
                Some((_, list)) => sizes.extend(Self::parse_list(list)?),
                None => sizes.push(token.parse()?),
            }
        }
        Ok(sizes)
    }
}

impl FromStr for Size {
    type Err = Error;

    /// `"demi"` (a paper name, any case) or `"layers,dims"` such as `"3,96"`.
    fn from_str(text: &str) -> Result<Self> {
        let lower = text.trim().to_ascii_lowercase();
        if let Some((_, size)) = Self::NAMED.iter().find(|(name, _)| *name == lower) {
            return Ok(*size);
        }
        let (layers, dims) = lower.split_once(',').ok_or_else(|| Error::BadSize(text.into()))?;
        let layers: usize = layers.trim().parse().map_err(|_| Error::BadSize(text.into()))?;
        let dims: usize = dims.trim().parse().map_err(|_| Error::BadSize(text.into()))?;
        if layers == 0 || dims == 0 {
            return Err(Error::BadSize(text.into()));
        }
        Ok(Size::new(layers, dims))
    }
}

/// One axis of a [`Size`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    Layers,
    Dims,
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({}, {})", self.layers, self.dims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_pairs() {
        assert_eq!("Demi".parse::<Size>().unwrap(), Size::new(2, 32));
        assert_eq!(" 3 , 96 ".parse::<Size>().unwrap(), Size::new(3, 96));
        assert_eq!(
            Size::parse_list("1,32 tall;6,384").unwrap(),
            vec![Size::new(1, 32), Size::new(6, 128), Size::new(6, 384)]
        );
        let minilm = Size::parse_list("minilm").unwrap();
        assert_eq!(minilm.first().copied(), Some(Size::new(1, 32)));
        assert_eq!(minilm.last().copied(), Some(Size::new(6, 384)));
        assert_eq!(minilm.len(), 6);
        assert_eq!(Size::parse_list("bert-base").unwrap(), Size::NAMED.map(|(_, s)| s).to_vec());
        for bad in ["", "3", "3x96", "0,32", "2,0", "-1,32", "grandest"] {
            assert!(matches!(bad.parse::<Size>(), Err(Error::BadSize(_))), "{bad:?}");
        }
    }

    #[test]
    fn checks_against_the_model() {
        let config: BertConfig = serde_json::from_str(
            r#"{"vocab_size": 30522, "intermediate_size": 1536, "num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12}"#,
        ).unwrap();
        assert!(Size::new(6, 384).check(&config).is_ok());
        assert!(Size::new(7, 32).check(&config).is_err());
        assert!(Size::new(1, 385).check(&config).is_err());
        assert_eq!(Size::full(&config), Size::new(6, 384));
        assert_eq!(Size::new(8, 256).name(), Some("grande"));
    }
}
