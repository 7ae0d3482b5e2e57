//! A text as a stream of tokens: characters (a UTF-8 file's distinct characters, sorted) or
//! bytes, the vocabulary to store with a model, and the windows a language model trains on.
//!
//! As nanoGPT's character-level recipe (and `../shared/bench/torch_gpt.py`): the vocabulary
//! is `sorted(set(text))`, the first 90% of the text trains and the rest validates.

use std::path::Path;

use descent_tensor::Rng;
use serde::{Deserialize, Serialize};

use crate::{DataError, Dataset};

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenKind {
    /// A Unicode character: the vocabulary is the text's distinct characters, sorted.
    Chars,
    /// A byte: the vocabulary is the 256 byte values (any file).
    Bytes,
}

/// The tokens of a text: what each id stands for. Saved with a model, so that `generate`
/// and `eval` read text as it trained.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vocab {
    /// Characters or bytes.
    pub kind: TokenKind,
    /// The characters, in id order (empty for bytes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chars: String,
}

impl Vocab {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        match self.kind {
            TokenKind::Chars => self.chars.chars().count(),
            TokenKind::Bytes => 256,
        }
    }

    /// Whether it holds no token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids of `text`; a character outside the vocabulary is refused, named.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, DataError> {
        match self.kind {
            TokenKind::Bytes => Ok(text.bytes().map(u32::from).collect()),
            TokenKind::Chars => {
                let chars: Vec<char> = self.chars.chars().collect();
                text.chars()
                    .enumerate()
                    .map(|(i, c)| {
                        chars
                            .binary_search(&c)
                            .map(|id| id as u32)
                            .map_err(|_| DataError::Text {
                                what: "the text".into(),
                                why: format!(
                                    "character {i} is {c:?} (U+{:04X}), which is not in the \
                                     vocabulary of {} characters the model knows",
                                    c as u32,
                                    chars.len()
                                ),
                            })
                    })
                    .collect()
            }
        }
    }

    /// The text of `ids` (bytes that are not UTF-8 become U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        match self.kind {
            TokenKind::Bytes => {
                let bytes: Vec<u8> = ids.iter().map(|&i| i as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
            TokenKind::Chars => {
                let chars: Vec<char> = self.chars.chars().collect();
                ids.iter()
                    .map(|&i| chars.get(i as usize).copied().unwrap_or('\u{FFFD}'))
                    .collect()
            }
        }
    }
}

/// A text's tokens and vocabulary.
#[derive(Clone, Debug)]
pub struct TextCorpus {
    /// What the ids stand for.
    pub vocab: Vocab,
    /// The text, token by token.
    pub ids: Vec<u32>,
}

impl TextCorpus {
    /// The tokens of `bytes` (`name` for messages): characters (the bytes must be UTF-8: the
    /// first invalid byte is named by its offset) or bytes.
    pub fn from_bytes(bytes: &[u8], kind: TokenKind, name: &str) -> Result<Self, DataError> {
        if bytes.is_empty() {
            return Err(DataError::Text {
                what: name.into(),
                why: "it is empty".into(),
            });
        }
        match kind {
            TokenKind::Bytes => Ok(Self {
                vocab: Vocab {
                    kind,
                    chars: String::new(),
                },
                ids: bytes.iter().map(|&b| u32::from(b)).collect(),
            }),
            TokenKind::Chars => {
                let text = std::str::from_utf8(bytes).map_err(|e| DataError::Text {
                    what: name.into(),
                    why: format!(
                        "it is not UTF-8: the byte at offset {} ({:#04x}) does not start or \
                         continue a character; read it as bytes instead",
                        e.valid_up_to(),
                        bytes[e.valid_up_to()]
                    ),
                })?;
                let mut chars: Vec<char> = text.chars().collect();
                chars.sort_unstable();
                chars.dedup();
                let vocab = Vocab {
                    kind,
                    chars: chars.iter().collect(),
                };
                let ids = text
                    .chars()
                    .map(|c| chars.binary_search(&c).expect("in the vocabulary") as u32)
                    .collect();
                Ok(Self { vocab, ids })
            }
        }
    }

    /// Reads a text file.
    pub fn read(path: &Path, kind: TokenKind) -> Result<Self, DataError> {
        let bytes = std::fs::read(path).map_err(|e| DataError::Io {
            action: "cannot read the text",
            path: path.to_path_buf(),
            source: e,
        })?;
        Self::from_bytes(&bytes, kind, &path.display().to_string())
    }

    /// The first `train` share of the tokens and the rest (a split by position, as nanoGPT
    /// makes it: the validation text is text the model never saw).
    pub fn split(&self, train: f64) -> (Vec<u32>, Vec<u32>) {
        let cut = ((self.ids.len() as f64 * train) as usize).min(self.ids.len());
        (self.ids[..cut].to_vec(), self.ids[cut..].to_vec())
    }

    /// Every window of `block` tokens of `ids` (one per offset), each with the next tokens as
    /// its targets: a shuffled epoch of them draws windows as nanoGPT's random offsets do,
    /// without repeats.
    pub fn windows(&self, ids: Vec<u32>, block: usize) -> Result<Dataset, DataError> {
        Dataset::windows(ids, block, self.vocab.len(), None)
    }

    /// `n` windows of `ids` at offsets drawn with `seed` (a fixed validation sample).
    pub fn sampled_windows(
        &self,
        ids: Vec<u32>,
        block: usize,
        n: usize,
        seed: u64,
    ) -> Result<Dataset, DataError> {
        let room = ids.len().saturating_sub(block) as u64;
        if room == 0 {
            return Dataset::windows(ids, block, self.vocab.len(), None);
        }
        let mut rng = Rng::new(seed ^ 0x7E47_0000_57A2_75E5);
        let starts = (0..n).map(|_| rng.below(room) as u32).collect();
        Dataset::windows(ids, block, self.vocab.len(), Some(starts))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_sorted_and_round_tripped() {
        let c = TextCorpus::from_bytes("hello, wörld".as_bytes(), TokenKind::Chars, "t").unwrap();
        assert_eq!(c.vocab.chars, " ,dehlorwö");
        assert_eq!(c.vocab.decode(&c.ids), "hello, wörld");
        assert_eq!(c.vocab.encode("world").unwrap(), vec![8, 6, 7, 5, 2]);
        let e = c.vocab.encode("wax").unwrap_err().to_string();
        assert!(e.contains("character 1 is 'a' (U+0061)"), "{e}");
        let b = TextCorpus::from_bytes(b"ab\xff", TokenKind::Bytes, "t").unwrap();
        assert_eq!((b.vocab.len(), b.ids.clone()), (256, vec![97, 98, 255]));
    }

    #[test]
    fn invalid_utf8_and_empty_texts_are_refused() {
        let e = TextCorpus::from_bytes(b"abc\xffdef", TokenKind::Chars, "f.txt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("f.txt") && e.contains("offset 3 (0xff)"), "{e}");
        let e = TextCorpus::from_bytes(b"", TokenKind::Chars, "f.txt")
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty"), "{e}");
    }

    /// A window's targets are its tokens shifted by one; every offset is a window; the split
    /// is by position; sampled windows depend on the seed only.
    #[test]
    fn windows_and_their_next_tokens() {
        let c = TextCorpus::from_bytes(b"abcdefghij", TokenKind::Chars, "t").unwrap();
        let (train, val) = c.split(0.8);
        assert_eq!((train.len(), val.len()), (8, 2));
        let w = c.windows(train, 3).unwrap();
        assert_eq!(w.len(), 5);
        assert_eq!(w.example(2), &[2.0, 3.0, 4.0]);
        assert_eq!(w.targets(2), &[3, 4, 5]);
        assert_eq!(w.targets(4), &[5, 6, 7]);
        let s1 = c.sampled_windows(c.ids.clone(), 4, 6, 1).unwrap();
        let s2 = c.sampled_windows(c.ids.clone(), 4, 6, 1).unwrap();
        assert_eq!(s1.len(), 6);
        for i in 0..6 {
            assert_eq!(s1.example(i), s2.example(i));
            assert_eq!(
                s1.targets(i)[..3],
                s1.example(i)[1..]
                    .iter()
                    .map(|&v| v as u32)
                    .collect::<Vec<_>>()[..]
            );
        }
        assert!(c.windows(vec![1, 2], 3).is_err());
    }
}
