//! The shared HS256 secret, kept out of logs and `Debug` output.

use super::error::KeyError;

/// Shortest secret that does not draw a warning: HS256 is as strong as its key, and 32 random
/// bytes match the hash's size (RFC 7518 §3.2 asks for at least that).
pub const RECOMMENDED_SECRET_BYTES: usize = 32;

/// The HS256 secret shared by edge-sfu and whoever mints tokens (`edge-sfu token`).
///
/// Its `Debug` form never shows the bytes, so settings and state that hold one can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// A secret of these bytes; an empty one is refused (it would sign with no key at all).
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, KeyError> {
        let bytes = bytes.into();
        if bytes.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        Ok(Secret(bytes))
    }

    /// A secret from the contents of a secret file: trailing line breaks are not part of it (an
    /// editor or `echo` adds one; a secret with a newline at its end would mint tokens that other
    /// tools, given the same file, cannot reproduce).
    pub fn from_file_contents(contents: &[u8]) -> Result<Self, KeyError> {
        let end = contents
            .iter()
            .rposition(|b| *b != b'\n' && *b != b'\r')
            .map_or(0, |i| i + 1);
        Secret::new(&contents[..end])
    }

    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Whether it is shorter than [`RECOMMENDED_SECRET_BYTES`] (worth a warning, not a refusal:
    /// an operator may have reasons, and the server still works).
    pub fn is_short(&self) -> bool {
        self.0.len() < RECOMMENDED_SECRET_BYTES
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} bytes, redacted)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_bytes() {
        let s = Secret::new("hunter2-hunter2").unwrap();
        let shown = format!("{s:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("15 bytes"), "{shown}");
    }

    #[test]
    fn file_contents_lose_trailing_line_breaks_only() {
        let s = Secret::from_file_contents(b" top secret \r\n\n").unwrap();
        assert_eq!(s.as_bytes(), b" top secret ");
        assert!(matches!(
            Secret::from_file_contents(b"\n\n"),
            Err(KeyError::EmptySecret)
        ));
        assert!(Secret::new(Vec::new()).is_err());
        assert!(Secret::new("short").unwrap().is_short());
        assert!(!Secret::new([7u8; 32]).unwrap().is_short());
    }
}
