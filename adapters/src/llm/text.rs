//! Turning a backend's token pieces into the text a client sees: whole UTF-8
//! characters only, stop strings cut out, and nothing streamed that a stop
//! string might still take back.

use super::TokenSink;

/// The text of one generation as it grows.
#[derive(Debug)]
pub(crate) struct Output {
    text: String,
    /// Bytes of `text` already sent to the sink.
    emitted: usize,
    /// Bytes of a UTF-8 character split across tokens, waiting for the rest.
    partial: Vec<u8>,
    stops: Vec<String>,
    longest_stop: usize,
    sink: TokenSink,
}

impl Output {
    pub(crate) fn new(stops: &[String], sink: TokenSink) -> Self {
        let stops: Vec<String> = stops.iter().filter(|s| !s.is_empty()).cloned().collect();
        let longest_stop = stops.iter().map(String::len).max().unwrap_or(0);
        Output {
            text: String::new(),
            emitted: 0,
            partial: Vec::new(),
            stops,
            longest_stop,
            sink,
        }
    }

    /// Adds a token's bytes. Returns true when a stop string was reached: the
    /// text now ends just before it and generation should end. (Only the
    /// embedded backend decodes tokens to bytes; Ollama sends text.)
    #[cfg_attr(not(feature = "llm-embedded"), allow(dead_code))]
    pub(crate) fn push_bytes(&mut self, bytes: &[u8]) -> bool {
        self.partial.extend_from_slice(bytes);
        let mut decoded = String::new();
        loop {
            match std::str::from_utf8(&self.partial) {
                Ok(s) => {
                    decoded.push_str(s);
                    self.partial.clear();
                    break;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    decoded.push_str(&String::from_utf8_lossy(&self.partial[..valid]));
                    match e.error_len() {
                        // Bytes that can never start a character: replace them, as a lossy decode would.
                        Some(bad) => {
                            decoded.push(char::REPLACEMENT_CHARACTER);
                            self.partial.drain(..valid + bad);
                        }
                        // The start of a character whose rest comes with the next token.
                        None => {
                            self.partial.drain(..valid);
                            break;
                        }
                    }
                }
            }
        }
        self.push_str(&decoded)
    }

    /// Adds text. Returns true when a stop string was reached.
    pub(crate) fn push_str(&mut self, s: &str) -> bool {
        if s.is_empty() {
            return false;
        }
        // A stop string may straddle what was there and what just came.
        let mut from = self
            .text
            .len()
            .saturating_sub(self.longest_stop.saturating_sub(1))
            .max(self.emitted);
        while !self.text.is_char_boundary(from) {
            from -= 1;
        }
        self.text.push_str(s);
        let hit = self
            .stops
            .iter()
            .filter_map(|stop| self.text[from..].find(stop.as_str()).map(|i| from + i))
            .min();
        if let Some(at) = hit {
            self.text.truncate(at);
            self.flush_to(at);
            return true;
        }
        let safe = self.text.len() - self.held_back();
        self.flush_to(safe);
        false
    }

    /// How many bytes at the end of the text could be the start of a stop string.
    fn held_back(&self) -> usize {
        let mut held = 0;
        for stop in &self.stops {
            for (i, _) in stop.char_indices().skip(1) {
                if i > held && self.text.ends_with(&stop[..i]) {
                    held = i;
                }
            }
        }
        held
    }

    fn flush_to(&mut self, end: usize) {
        if end > self.emitted {
            self.sink.send(&self.text[self.emitted..end]);
            self.emitted = end;
        }
    }

    /// Ends the generation: what was held back is sent, and the whole text returned.
    pub(crate) fn finish(mut self) -> String {
        if !self.partial.is_empty() {
            let rest = String::from_utf8_lossy(&self.partial).into_owned();
            self.partial.clear();
            self.text.push_str(&rest);
        }
        let end = self.text.len();
        self.flush_to(end);
        self.text
    }

    #[cfg(test)]
    pub(crate) fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn collecting() -> (TokenSink, Arc<Mutex<Vec<String>>>) {
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        let sink = TokenSink::new(move |s| {
            if let Ok(mut g) = g.lock() {
                g.push(s.to_string());
            }
        });
        (sink, got)
    }

    fn chunks(got: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        got.lock().map(|g| g.clone()).unwrap_or_default()
    }

    #[test]
    fn a_character_split_across_tokens_is_sent_whole() {
        let (sink, got) = collecting();
        let mut out = Output::new(&[], sink);
        let e = "é".as_bytes();
        assert!(!out.push_bytes(&[b'a', e[0]]));
        assert!(!out.push_bytes(&[e[1], b'b']));
        assert_eq!(out.finish(), "aéb");
        assert_eq!(chunks(&got), vec!["a", "éb"]);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut out = Output::new(&[], TokenSink::discard());
        out.push_bytes(&[b'x', 0xff, b'y']);
        assert_eq!(out.finish(), "x\u{fffd}y");
    }

    #[test]
    fn a_stop_string_across_tokens_ends_the_text_and_is_never_streamed() {
        let (sink, got) = collecting();
        let mut out = Output::new(&["\nUser:".to_string()], sink);
        assert!(!out.push_str("Hello"));
        assert!(!out.push_str(" there\nUs"));
        assert!(out.push_str("er: hi"));
        assert_eq!(out.text(), "Hello there");
        assert_eq!(out.finish(), "Hello there");
        assert_eq!(chunks(&got).concat(), "Hello there");
        assert!(chunks(&got).iter().all(|c| !c.contains('\n')));
    }

    #[test]
    fn a_held_back_prefix_that_turns_out_not_to_stop_is_sent() {
        let (sink, got) = collecting();
        let mut out = Output::new(&["STOP".to_string()], sink);
        assert!(!out.push_str("a ST"));
        assert_eq!(chunks(&got).concat(), "a ");
        assert!(!out.push_str("AR"));
        assert_eq!(chunks(&got).concat(), "a STAR");
        assert!(!out.push_str("T, S"));
        assert!(out.push_str("TOP and more"));
        assert_eq!(out.finish(), "a START, ");
        assert_eq!(chunks(&got).concat(), "a START, ");
    }
}
