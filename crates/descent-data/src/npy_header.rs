//! The header of a `.npy` file, read strictly and in one pass: the dict NumPy writes
//! (`{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`, keys in any order, either
//! quote, the trailing comma optional) and nothing else.
//!
//! npyz parses headers as general Python literals with a backtracking parser that takes time
//! exponential in the depth of unclosed brackets (fuzzing found 217 bytes that ran for
//! minutes; a 10 kB header of three unclosed lists takes 2 s) and multiplies the shape's sizes
//! without overflow checks. A header is checked here first, so npyz only ever sees a short,
//! well-formed one whose sizes multiply without overflow.

/// What a header states.
#[derive(Debug, PartialEq)]
pub(crate) struct Header {
    /// The dtype's type string (`<f4`, `|u1`), or `None` for a structured dtype (a list of
    /// fields).
    pub descr: Option<String>,
    pub fortran_order: bool,
    /// Sizes, outermost first; empty for a scalar.
    pub shape: Vec<u64>,
}

/// Parses a header's text (the dict and its padding); the error says what was wrong and where.
pub(crate) fn parse(text: &[u8]) -> Result<Header, String> {
    let mut c = Cursor { text, at: 0 };
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    c.expect(b'{', "'{' opening the dict")?;
    loop {
        c.skip_space();
        if c.eat(b'}') {
            break;
        }
        let key_at = c.at;
        let key = c.string("a quoted key or '}'")?;
        c.skip_space();
        c.expect(b':', "':' after the key")?;
        c.skip_space();
        let seen = match key {
            "descr" => descr.replace(c.descr()?).is_some(),
            "fortran_order" => fortran_order.replace(c.boolean()?).is_some(),
            "shape" => shape.replace(c.shape()?).is_some(),
            other => {
                return Err(format!(
                    "key '{}' at byte {key_at} is not one NumPy writes (descr, fortran_order, \
                     shape)",
                    other.escape_default()
                ))
            }
        };
        if seen {
            return Err(format!("key '{key}' appears twice"));
        }
        c.skip_space();
        if !c.eat(b',') {
            c.expect(b'}', "',' or '}' after a value")?;
            break;
        }
    }
    c.skip_space();
    if c.at < text.len() {
        return Err(format!(
            "bytes follow the dict's closing '}}' (at byte {})",
            c.at
        ));
    }
    let missing = |key| format!("has no '{key}' key");
    Ok(Header {
        descr: descr.ok_or_else(|| missing("descr"))?,
        fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
        shape: shape.ok_or_else(|| missing("shape"))?,
    })
}

struct Cursor<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        self.at += usize::from(hit);
        hit
    }

    fn expect(&mut self, b: u8, what: &str) -> Result<(), String> {
        if self.eat(b) {
            Ok(())
        } else {
            Err(self.wanted(what))
        }
    }

    fn wanted(&self, what: &str) -> String {
        match self.peek() {
            Some(b) => format!(
                "expected {what} at byte {}, found '{}'",
                self.at,
                char::from(b).escape_default()
            ),
            None => format!("expected {what}, but the header ends at byte {}", self.at),
        }
    }

    fn skip_space(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string in single or double quotes, without escapes (NumPy's keys and type strings
    /// have none).
    fn string(&mut self, what: &str) -> Result<&'a str, String> {
        let Some(quote @ (b'\'' | b'"')) = self.peek() else {
            return Err(self.wanted(what));
        };
        let start = self.at + 1;
        let len = self.text[start..]
            .iter()
            .position(|&b| b == quote || b == b'\\')
            .ok_or_else(|| format!("the string opened at byte {} is never closed", self.at))?;
        if self.text[start + len] == b'\\' {
            return Err(format!(
                "the string opened at byte {} holds an escape; NumPy's keys and type strings \
                 have none",
                self.at
            ));
        }
        let s = std::str::from_utf8(&self.text[start..start + len])
            .map_err(|_| format!("the string at byte {} is not UTF-8", self.at))?;
        self.at = start + len + 1;
        Ok(s)
    }

    /// A type string, or a structured dtype's list of fields (skipped: it is refused later).
    fn descr(&mut self) -> Result<Option<String>, String> {
        if self.peek() != Some(b'[') {
            return Ok(Some(
                self.string("a type string such as '<f4'")?.to_string(),
            ));
        }
        let open = self.at;
        let mut depth = 0usize;
        while let Some(b) = self.peek() {
            match b {
                b'\'' | b'"' => {
                    self.string("a string")?;
                    continue;
                }
                b'[' | b'(' => depth += 1,
                b']' | b')' => {
                    depth -= 1;
                    if depth == 0 {
                        self.at += 1;
                        return Ok(None);
                    }
                }
                _ => {}
            }
            self.at += 1;
        }
        Err(format!(
            "the list of fields opened at byte {open} is never closed"
        ))
    }

    fn boolean(&mut self) -> Result<bool, String> {
        for (word, value) in [(&b"True"[..], true), (b"False", false)] {
            if self.text[self.at..].starts_with(word) {
                self.at += word.len();
                return Ok(value);
            }
        }
        Err(self.wanted("True or False"))
    }

    /// `(2, 3)`, `(3,)` or `()`: sizes as u64.
    fn shape(&mut self) -> Result<Vec<u64>, String> {
        self.expect(b'(', "'(' opening the shape")?;
        let mut shape = Vec::new();
        loop {
            self.skip_space();
            if self.eat(b')') {
                return Ok(shape);
            }
            let start = self.at;
            while self.peek().is_some_and(|b| b.is_ascii_digit()) {
                self.at += 1;
            }
            if start == self.at {
                return Err(self.wanted("a size (a whole number at least 0) or ')'"));
            }
            let digits = std::str::from_utf8(&self.text[start..self.at]).unwrap_or_default();
            shape.push(digits.parse().map_err(|_| {
                format!("the size {digits} at byte {start} is larger than any array")
            })?);
            self.skip_space();
            if !self.eat(b',') {
                self.expect(b')', "',' or ')' in the shape")?;
                return Ok(shape);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Header {
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn bad(text: &str) -> String {
        parse(text.as_bytes()).unwrap_err()
    }

    #[test]
    fn the_dicts_numpy_and_others_write_are_read() {
        let h = ok("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }          \n");
        assert_eq!(
            h,
            Header {
                descr: Some("<f4".into()),
                fortran_order: false,
                shape: vec![2, 3]
            }
        );
        assert_eq!(
            ok("{'descr': '|u1', 'fortran_order': True, 'shape': (3,), }").shape,
            [3]
        );
        assert_eq!(
            ok("{'descr': '<f8', 'fortran_order': False, 'shape': (), }").shape,
            [0u64; 0]
        );
        // Other writers: double quotes, another key order, no trailing comma, no spaces.
        let h = ok(r#"{"shape":(4,5),"fortran_order":True,"descr":">i8"}"#);
        assert_eq!((h.shape, h.fortran_order), (vec![4, 5], true));
        assert_eq!(h.descr.as_deref(), Some(">i8"));
        let s = ok(
            "{'descr': [('a', '<f4'), ('b', '<i4', (2,))], 'fortran_order': False, \
                    'shape': (1,), }",
        );
        assert_eq!(s.descr, None);
    }

    #[test]
    fn anything_else_is_refused_saying_where() {
        let cases = [
            ("{'descr': '<f4', 'fortran_order': False}", "has no 'shape'"),
            (
                "{'descr': '<f4', 'descr': '<f8', 'fortran_order': False, 'shape': ()}",
                "twice",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}",
                "key 'x' at byte 54",
            ),
            (
                "{'descr': '<f4', 'fortran_order': 0, 'shape': ()}",
                "True or False at byte 34",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
                "found '-'",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}",
                "larger than any array",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3}",
                "',' or ')'",
            ),
            (
                "{'descr': '<f4', 'fortran_order': False, 'shape': ()} x",
                "bytes follow",
            ),
            ("{'descr': '<f4", "never closed"),
            ("{'descr': 'a\\'b'}", "escape"),
            ("{'descr': [('a', '<f4'), ", "never closed"),
            ("", "header ends at byte 0"),
        ];
        for (text, want) in cases {
            let e = bad(text);
            assert!(e.contains(want), "{text}: {e}");
        }
    }

    #[test]
    fn deep_or_long_headers_are_read_in_one_pass() {
        // What fuzzing found (a descr followed by 90 unclosed lists), and a 10 kB header of
        // unclosed lists: both refused at once, where npyz's parser takes minutes and seconds.
        let deep = format!(
            "{{'descr': 'None|u1',{} 'shape': (3, 1), }}",
            "[".repeat(90)
        );
        assert!(bad(&deep).contains("found '['"), "{}", bad(&deep));
        let long = format!(
            "{{'descr': [[[{}, 'fortran_order': False, 'shape': (3,), }}",
            "1,".repeat(4900)
        );
        assert!(bad(&long).contains("never closed"), "{}", bad(&long));
    }
}
