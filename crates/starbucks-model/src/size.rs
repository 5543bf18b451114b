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
        if self.layers == 0 || self.dims == 0 || self.layers > full.layers || self.dims > full.dims {
            return Err(Error::SizeTooLarge {
                layers: self.layers,
                dims: self.dims,
                max_layers: full.layers,
                max_dims: full.dims,
            });
        }
        Ok(())
    }

    /// Parses a list of sizes such as `"1,32 2,64"` or `"demi short"` (whitespace or `;` separated).
    pub fn parse_list(text: &str) -> Result<Vec<Size>> {
        text.split(|c: char| c.is_whitespace() || c == ';').filter(|s| !s.is_empty()).map(str::parse).collect()
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
